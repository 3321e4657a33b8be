/*
 * debspawn runs builds on a pseudo-terminal: its output carries carriage
 * returns, colour codes (CSI) and GCC's hyperlinks (OSC 8). The log file keeps
 * them; excerpts and the warning parser read the plain text.
 */

// OSC sequences end in BEL or ST (ESC \); CSI sequences in a final byte @..~.
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]/g;

/** `text` without terminal escape sequences and carriage returns. */
export function plainText(text: string): string {
  if (!text.includes('\x1b') && !text.includes('\r')) return text;
  return text.replace(ESCAPES, '').replace(/\r/g, '');
}

/**
 * Splits a stream of text chunks into complete lines. `push` returns the lines
 * a chunk completed; `end` the last unterminated one, if any. A line longer
 * than `maxLineChars` is passed on in pieces, so one endless line cannot grow
 * memory without bound.
 */
export function createLineSplitter(maxLineChars = 64 * 1024): { push(chunk: string): string[]; end(): string[] } {
  let partial = '';
  return {
    push(chunk) {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      const lines: string[] = [];
      for (const part of parts) lines.push(part);
      while (partial.length > maxLineChars) {
        lines.push(partial.slice(0, maxLineChars));
        partial = partial.slice(maxLineChars);
      }
      return lines;
    },
    end() {
      const rest = partial;
      partial = '';
      return rest === '' ? [] : [rest];
    },
  };
}
