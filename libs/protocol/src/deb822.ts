/*
 * Debian control files (deb822(5)): `.dsc`, `.changes`, `.buildinfo`, `.dud`.
 * A paragraph is an ordered list of fields; a field's value keeps its
 * continuation lines, one per line, without the leading space that marks them.
 */

/** One field of a paragraph: name as written, value with continuation lines joined by `\n`. */
export interface Deb822Field {
  name: string;
  value: string;
}

/** An ordered paragraph of fields. Field names compare case-insensitively, as deb822 says. */
export class Deb822Paragraph {
  readonly fields: Deb822Field[] = [];

  constructor(fields: Iterable<[string, string]> = []) {
    for (const [name, value] of fields) {
      this.set(name, value);
    }
  }

  /** The value of `name`, or `undefined` when the paragraph lacks it. */
  get(name: string): string | undefined {
    return this.find(name)?.value;
  }

  /** Sets `name` to `value`, keeping the field's position when it exists, else appending it. */
  set(name: string, value: string): this {
    const existing = this.find(name);
    if (existing) {
      existing.value = value;
    } else {
      this.fields.push({ name, value });
    }
    return this;
  }

  /** Removes `name`; true when it was there. */
  delete(name: string): boolean {
    const index = this.fields.findIndex((field) => field.name.toLowerCase() === name.toLowerCase());
    if (index === -1) {
      return false;
    }
    this.fields.splice(index, 1);
    return true;
  }

  private find(name: string): Deb822Field | undefined {
    const key = name.toLowerCase();
    return this.fields.find((field) => field.name.toLowerCase() === key);
  }
}

/** A syntax error in a control file, with the 1-based line where it was found. */
export class Deb822Error extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(`line ${line}: ${message}`);
    this.name = 'Deb822Error';
  }
}

const FIELD_LINE = /^([!-9;-~][!-9;-~]*):(.*)$/;

/** Parses deb822 text (already without any OpenPGP armor) into its paragraphs. */
export function parseDeb822(text: string): Deb822Paragraph[] {
  const paragraphs: Deb822Paragraph[] = [];
  let current: Deb822Paragraph | undefined;
  let last: Deb822Field | undefined;
  const lines = text.split('\n');
  lines.forEach((rawLine, index) => {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    const lineNo = index + 1;
    if (line.trim() === '') {
      current = undefined;
      last = undefined;
      return;
    }
    if (line.startsWith('#')) {
      return;
    }
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (!last) {
        throw new Deb822Error('continuation line without a field before it', lineNo);
      }
      last.value += `\n${line.slice(1)}`;
      return;
    }
    const match = FIELD_LINE.exec(line);
    if (!match) {
      throw new Deb822Error(`expected "Field: value", found ${JSON.stringify(line.slice(0, 60))}`, lineNo);
    }
    const name = match[1] as string;
    if (!current) {
      current = new Deb822Paragraph();
      paragraphs.push(current);
    }
    if (current.get(name) !== undefined) {
      throw new Deb822Error(`field ${name} appears twice in one paragraph`, lineNo);
    }
    current.set(name, (match[2] as string).trim());
    last = current.fields[current.fields.length - 1];
  });
  return paragraphs;
}

/** Writes paragraphs as deb822 text: one blank line between paragraphs, a final newline. */
export function writeDeb822(paragraphs: readonly Deb822Paragraph[]): string {
  return paragraphs
    .map((paragraph) =>
      paragraph.fields
        .map(({ name, value }) => {
          const [first, ...rest] = value.split('\n');
          const head = first === '' ? `${name}:` : `${name}: ${first}`;
          return [head, ...rest.map((line) => ` ${line}`)].join('\n');
        })
        .join('\n'),
    )
    .join('\n\n')
    .concat('\n');
}

/** The parts of an OpenPGP clearsigned message (RFC 9580 §7). */
export interface ClearsignedParts {
  /** The signed text, dash-escaping undone, with a trailing newline. */
  text: string;
  /** The `Hash:` armor headers, e.g. `['SHA512']`. */
  hashes: string[];
  /** The whole `-----BEGIN PGP SIGNATURE-----` … `-----END PGP SIGNATURE-----` block. */
  signature: string;
}

const SIGNED_BEGIN = '-----BEGIN PGP SIGNED MESSAGE-----';
const SIGNATURE_BEGIN = '-----BEGIN PGP SIGNATURE-----';
const SIGNATURE_END = '-----END PGP SIGNATURE-----';

/**
 * Splits a clearsigned file into its signed text and signature. Returns `null`
 * for a file that is not clearsigned. This does not verify anything: callers
 * that need trust verify with gpgv or openpgp.js.
 */
export function splitClearsigned(input: string): ClearsignedParts | null {
  const lines = input.split(/\r?\n/);
  const start = lines.findIndex((line) => line.trimEnd() === SIGNED_BEGIN);
  if (start === -1) {
    return null;
  }
  const hashes: string[] = [];
  let i = start + 1;
  for (; i < lines.length && (lines[i] as string).trim() !== ''; i++) {
    const header = /^Hash:\s*(.+)$/.exec(lines[i] as string);
    if (header) {
      hashes.push(...(header[1] as string).split(',').map((h) => h.trim()));
    }
  }
  const sigStart = lines.findIndex((line, index) => index > i && line.trimEnd() === SIGNATURE_BEGIN);
  const sigEnd = lines.findIndex((line, index) => index > sigStart && line.trimEnd() === SIGNATURE_END);
  if (sigStart === -1 || sigEnd === -1) {
    throw new Deb822Error('clearsigned message has no complete signature block', sigStart === -1 ? lines.length : sigStart + 1);
  }
  const body = lines.slice(i + 1, sigStart).map((line) => (line.startsWith('- ') ? line.slice(2) : line));
  return {
    text: `${body.join('\n')}\n`,
    hashes,
    signature: `${lines.slice(sigStart, sigEnd + 1).join('\n')}\n`,
  };
}

/** Parses a control file that may be clearsigned; returns its paragraphs and, if signed, the signature parts. */
export function parseControlFile(input: string): { paragraphs: Deb822Paragraph[]; clearsigned: ClearsignedParts | null } {
  const clearsigned = splitClearsigned(input);
  return { paragraphs: parseDeb822(clearsigned ? clearsigned.text : input), clearsigned };
}

/** One entry of a `Files` or `Checksums-*` list. */
export interface FileListEntry {
  /** Hex digest: MD5 for `Files`, SHA-1 / SHA-256 for `Checksums-Sha1` / `Checksums-Sha256`. */
  digest: string;
  /** Size in bytes. */
  size: number;
  /** `Files` of a `.changes`/`.dud` only: section and priority. */
  section?: string;
  priority?: string;
  name: string;
}

/**
 * Reads a `Files` or `Checksums-*` field value. `.changes` and `.dud` `Files`
 * lines carry section and priority (`md5 size section priority name`); every
 * other list is `digest size name`.
 */
export function parseFileList(value: string | undefined): FileListEntry[] {
  if (!value) {
    return [];
  }
  return value
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const parts = line.split(/\s+/);
      if ((parts.length !== 3 && parts.length !== 5) || !/^[0-9]+$/.test(parts[1] as string)) {
        throw new Error(`malformed file list line ${JSON.stringify(line)}`);
      }
      const size = Number(parts[1]);
      return parts.length === 5
        ? { digest: parts[0] as string, size, section: parts[2] as string, priority: parts[3] as string, name: parts[4] as string }
        : { digest: parts[0] as string, size, name: parts[2] as string };
    });
}

/** Writes a file list as a multi-line field value (empty first line, one entry per continuation line). */
export function formatFileList(entries: readonly FileListEntry[]): string {
  return [
    '',
    ...entries.map((entry) =>
      entry.section !== undefined
        ? `${entry.digest} ${entry.size} ${entry.section} ${entry.priority ?? 'optional'} ${entry.name}`
        : `${entry.digest} ${entry.size} ${entry.name}`,
    ),
  ].join('\n');
}
