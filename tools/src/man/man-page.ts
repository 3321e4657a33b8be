/**
 * Manual pages made from the commands' own `--help` text, so the two never
 * say different things. The help texts share one layout (see `spark --help`
 * and libs/service `startService`): a `usage:` block, an optional summary
 * paragraph, then sections — a line `name:` followed by entries indented two
 * spaces, `TERM  description`, whose longer descriptions continue on lines
 * indented to the description's column.
 */

/** What a page is about, beside its help text. */
export interface PageSource {
  /** The command: `spark`, `spark-connector`. */
  name: string;
  /** 1 for user commands, 8 for the daemons. */
  section: 1 | 8;
  /** What the command does, in a few words, for the NAME section. */
  title: string;
  /** The command's `--help` output. */
  help: string;
  version: string;
  /** Pages named under SEE ALSO, as `name(section)`. */
  seeAlso: readonly string[];
  /** Paths named under FILES, with what each is. */
  files?: readonly (readonly [path: string, meaning: string])[];
}

interface Entry {
  term: string[];
  description: string[];
}

interface Section {
  title: string;
  entries: Entry[];
  /** Lines of the section that are no entry (a closing remark), in order. */
  text: string[];
}

interface ParsedHelp {
  usage: string[];
  summary: string[];
  sections: Section[];
}

const HEADER = /^([a-z][a-z ]*):$/;

/** Splits a help text into its usage, summary and sections. */
export function parseHelp(help: string): ParsedHelp {
  const lines = help.replace(/\s+$/, '').split('\n');
  const usage: string[] = [];
  let index = 0;
  for (; index < lines.length && lines[index] !== ''; index++) {
    const line = lines[index] ?? '';
    usage.push(line.replace(/^usage:\s*/, '').trim());
  }
  const summary: string[] = [];
  const sections: Section[] = [];
  let current: Section | null = null;
  let column = 0;
  for (; index < lines.length; index++) {
    const line = lines[index] ?? '';
    if (line === '') continue;
    const header = HEADER.exec(line);
    if (header) {
      current = { title: header[1] ?? '', entries: [], text: [] };
      sections.push(current);
      column = descriptionColumn(lines, index + 1);
      continue;
    }
    if (!current) {
      summary.push(line.trim());
      continue;
    }
    const indent = line.length - line.trimStart().length;
    const last = current.entries.at(-1);
    if (indent === 0) {
      current.text.push(line);
    } else if (indent === 2) {
      // The term ends at the first gap of two or more spaces; a term too long for its column has no description on its line.
      const [head = '', ...rest] = line.trim().split(/ {2,}/);
      current.entries.push({ term: [head], description: rest.length > 0 ? [rest.join(' ')] : [] });
    } else if (last && indent >= column) {
      last.description.push(line.trim());
    } else if (last) {
      last.term.push(line.trim());
    }
  }
  return { usage, summary, sections };
}

/**
 * The column where a section's descriptions start: where the text after a
 * two-space gap begins on the entry lines (the same for all of them), or the
 * indent of the description-only lines.
 */
function descriptionColumn(lines: readonly string[], from: number): number {
  const columns = new Map<number, number>();
  for (let index = from; index < lines.length; index++) {
    const line = lines[index] ?? '';
    if (line === '' || HEADER.test(line)) break;
    const indent = line.length - line.trimStart().length;
    if (indent > 2) {
      columns.set(indent, (columns.get(indent) ?? 0) + 1);
      continue;
    }
    const gap = /^ {2}\S.*?\S? {2,}(?=\S)/.exec(line);
    if (gap) columns.set(gap[0].length, (columns.get(gap[0].length) ?? 0) + 1);
  }
  let best = 0;
  let count = 0;
  for (const [column, seen] of columns) {
    if (seen > count || (seen === count && column > best)) [best, count] = [column, seen];
  }
  return best;
}

/** Escapes text for roff: backslashes, hyphens of options, a leading dot or quote. */
export function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/^([.'])/, '\\&$1');
}

/** The manual page of `source`, in man(7) roff. */
export function manPage(source: PageSource): string {
  const parsed = parseHelp(source.help);
  const out: string[] = [
    `.\\" Made from \`${source.name} --help\` by tools/src/man (npm run man); edit the help text, not this file.`,
    `.TH ${source.name.toUpperCase()} ${source.section} "" "spark-ts ${source.version}" "Laniakea spark-ts"`,
    '.SH NAME',
    `${roff(source.name)} \\- ${roff(source.title)}`,
    '.SH SYNOPSIS',
    '.nf',
    ...parsed.usage.map((line) => roff(line)),
    '.fi',
  ];
  if (parsed.summary.length > 0) out.push('.SH DESCRIPTION', roff(parsed.summary.join(' ')));
  for (const section of parsed.sections) {
    out.push(`.SH ${section.title.toUpperCase()}`);
    for (const entry of section.entries) {
      out.push('.TP', `.B ${roff(entry.term.join(' '))}`, roff(entry.description.join(' ')));
    }
    for (const line of section.text) out.push('.PP', roff(line));
  }
  if (source.files && source.files.length > 0) {
    out.push('.SH FILES');
    for (const [path, meaning] of source.files) out.push('.TP', `.I ${roff(path)}`, roff(meaning));
  }
  out.push('.SH SEE ALSO', source.seeAlso.map((page) => roff(page)).join(', '));
  return `${out.join('\n')}\n`;
}
