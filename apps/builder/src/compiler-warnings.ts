/** One GCC or Clang warning found in a build log. */
export interface CompilerWarning {
  file: string;
  line: number;
  column: number | null;
  /** The function GCC named in the `In function ‘…’:` line before it, if any. */
  function: string | null;
  message: string;
  /** The option that enabled it, e.g. `-Wunused-variable`, or null. */
  option: string | null;
}

// `hello.c:2:22: warning: unused variable ‘x’ [-Wunused-variable]` (GCC and Clang alike).
const WARNING = /^(?<file>[^\s:][^:]*):(?<line>\d+):(?:(?<column>\d+):)? warning: (?<message>.*?)(?: \[(?<option>-W[^\]]+)\])?\s*$/;
// `hello.c: In function ‘main’:` — quotes are ‘’ in UTF-8 locales, '' in C. They are written as escapes
// (\u2018 ‘, \u2019 ’) so that the bundles' source stays Latin-1 (tools/package/bundle.ts); esbuild's ascii
// charset does not rewrite regular expressions.
const IN_FUNCTION = /^(?<file>[^\s:][^:]*): In (?:member )?function [\u2018'`](?<name>[^\u2019']+)[\u2019']:/;

/** What every line the collector reads holds: a line without one of these is neither a warning nor an `In function` line. */
export const WARNING_NEEDLES: readonly string[] = [': warning: ', ': In '];

/** Longest warning list kept per job: a pathological build cannot grow the report without bound. */
export const MAX_WARNINGS = 10_000;

/** Collects warnings from plain log lines (terminal escapes removed), one line at a time. */
export function createWarningCollector(maxWarnings = MAX_WARNINGS): {
  line(text: string): void;
  readonly warnings: CompilerWarning[];
  /** True once `maxWarnings` are kept: no line can change the list any more. */
  readonly full: boolean;
} {
  const warnings: CompilerWarning[] = [];
  let currentFunction: { file: string; name: string } | null = null;
  return {
    warnings,
    get full() {
      return warnings.length >= maxWarnings;
    },
    line(text) {
      // Most lines are neither; skip the regular expressions for them.
      if (!WARNING_NEEDLES.some((needle) => text.includes(needle))) return;
      const inFunction = IN_FUNCTION.exec(text);
      if (inFunction?.groups) {
        currentFunction = { file: inFunction.groups['file'] as string, name: inFunction.groups['name'] as string };
        return;
      }
      const match = WARNING.exec(text);
      if (!match?.groups || warnings.length >= maxWarnings) return;
      const file = match.groups['file'] as string;
      const column = match.groups['column'];
      warnings.push({
        file,
        line: Number(match.groups['line']),
        column: column === undefined ? null : Number(column),
        function: currentFunction?.file === file ? currentFunction.name : null,
        message: match.groups['message'] as string,
        option: match.groups['option'] ?? null,
      });
    },
  };
}
