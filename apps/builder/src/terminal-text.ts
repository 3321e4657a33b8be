/*
 * debspawn runs builds on a pseudo-terminal: its output carries carriage
 * returns, colour codes (CSI) and GCC's hyperlinks (OSC 8). The log file keeps
 * them; excerpts and the line listeners read the plain text. The relay works
 * on the bytes as they come and decodes only the lines someone reads.
 */

// OSC sequences end in BEL or ST (ESC \); CSI sequences in a final byte @..~.
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]/g;

const LF = 0x0a;
const ESC = 0x1b;

/** `text` without terminal escape sequences and carriage returns. */
export function plainText(text: string): string {
  if (!text.includes('\x1b') && !text.includes('\r')) return text;
  return text.replace(ESCAPES, '').replace(/\r/g, '');
}

/** LF-terminated lines of output (UTF-8 bytes), each line made plain text; the text ends in `\n` as the bytes do. */
export function plainLines(lines: Buffer): string {
  const text = lines.toString('utf8');
  if (!text.includes('\x1b') && !text.includes('\r')) return text;
  return text.split('\n').map(plainText).join('\n');
}

/**
 * Splits a stream of byte chunks into runs of complete lines. `push` returns
 * what a chunk completed: runs of whole lines, each run ending in LF (only a
 * line that spans two chunks is copied); `end` the last unterminated line, with an LF
 * added. A line still unterminated past `maxLineBytes` is passed on in pieces
 * (each given an LF, cut between UTF-8 characters), so one endless line
 * cannot grow memory without bound.
 */
export function createLineScanner(maxLineBytes = 64 * 1024): { push(chunk: Buffer): Buffer[]; end(): Buffer[] } {
  if (!(maxLineBytes >= 4)) throw new RangeError(`maxLineBytes must be at least 4, not ${maxLineBytes}`);
  let partial: Buffer = Buffer.alloc(0);
  const newline = Buffer.from('\n');
  return {
    push(chunk) {
      const runs: Buffer[] = [];
      const last = chunk.lastIndexOf(LF);
      if (last === -1) {
        partial = partial.length === 0 ? chunk : Buffer.concat([partial, chunk]);
      } else {
        let from = 0;
        if (partial.length > 0) {
          // Only the line that spans the chunks is copied; the rest of the chunk is passed on as it is.
          from = chunk.indexOf(LF) + 1;
          runs.push(Buffer.concat([partial, chunk.subarray(0, from)]));
        }
        if (from <= last) runs.push(chunk.subarray(from, last + 1));
        partial = chunk.subarray(last + 1);
      }
      while (partial.length > maxLineBytes) {
        let cut = maxLineBytes;
        // Back off to the first byte of a UTF-8 character (continuation bytes are 10xxxxxx).
        while (cut > maxLineBytes - 3 && ((partial[cut] as number) & 0xc0) === 0x80) cut--;
        runs.push(Buffer.concat([partial.subarray(0, cut), newline]));
        partial = partial.subarray(cut);
      }
      return runs;
    },
    end() {
      const rest = partial;
      partial = Buffer.alloc(0);
      return rest.length === 0 ? [] : [Buffer.concat([rest, newline])];
    },
  };
}

// One escape sequence as in ESCAPES, never across a line end (OSC bodies stop at LF).
const ESCAPE_IN_LINE = String.raw`(?:\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_])`;

/** Bytes of lines searched at a time, far under V8's large-object size (128 KiB). */
const SEARCH_PIECE_BYTES = 64 * 1024;

// eslint-disable-next-line no-control-regex
const NOT_ASCII = /[^\x00-\x7f]/;

/**
 * Finds the lines that may hold one of `needles` in their plain text, in runs
 * of LF-terminated UTF-8 lines, and returns them as plain text (escapes and
 * CRs removed), in order; the caller tests the plain text. The run is read as
 * Latin-1 (a character a byte: no UTF-8 decoding) and searched with one
 * regular expression that allows escape sequences between a needle's
 * characters, as coloured output puts them (GCC's `warning:` is coloured
 * apart from the `:` before it). Only the lines found are decoded. A needle
 * broken by a bare CR is not found (a terminal would not show it whole
 * either). Throws on an empty needle or one holding LF, CR or ESC.
 */
export function createLineMatcher(needles: readonly string[]): (lines: Buffer) => string[] {
  for (const needle of needles) {
    // eslint-disable-next-line no-control-regex
    if (needle === '' || /[\n\r\x1b]/.test(needle)) {
      throw new Error(`cannot watch the output for ${JSON.stringify(needle)}: a needle is a non-empty piece of one line`);
    }
  }
  if (needles.length === 0) return () => [];
  const alternatives = needles.map((needle) =>
    [...Buffer.from(needle).toString('latin1')].map((char) => char.replace(/[\\^$.*+?()[\]{}|/-]/, '\\$&')).join(`${ESCAPE_IN_LINE}*`),
  );
  const pattern = new RegExp(alternatives.join('|'), 'g');
  const needleBytes = needles.map((needle) => Buffer.from(needle));
  const foundLine = (line: string) => {
    // Made plain as Latin-1 (escapes and CRs are ASCII: no UTF-8 character is cut), then decoded if it is not ASCII.
    const plain = plainText(line);
    return NOT_ASCII.test(plain) ? Buffer.from(plain, 'latin1').toString('utf8') : plain;
  };
  // Lines without an escape sequence hold a needle only as it is: found with Buffer.indexOf, no string made of them.
  const searchPlain = (lines: Buffer, found: string[]) => {
    const starts: number[] = [];
    for (const needle of needleBytes) {
      for (let at = lines.indexOf(needle); at !== -1;) {
        const start = at === 0 ? 0 : lines.lastIndexOf(LF, at - 1) + 1;
        const end = lines.indexOf(LF, at);
        starts.push(start);
        at = end === -1 ? -1 : lines.indexOf(needle, end + 1);
      }
    }
    if (starts.length === 0) return;
    // In order, one line once whatever it holds.
    starts.sort((a, b) => a - b);
    for (let i = 0; i < starts.length; i++) {
      const start = starts[i] as number;
      if (i > 0 && start === starts[i - 1]) continue;
      found.push(foundLine(lines.toString('latin1', start, lines.indexOf(LF, start))));
    }
  };
  const search = (lines: Buffer, found: string[]) => {
    if (!lines.includes(ESC)) {
      searchPlain(lines, found);
      return;
    }
    const text = lines.toString('latin1');
    pattern.lastIndex = 0;
    for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
      const start = match.index === 0 ? 0 : text.lastIndexOf('\n', match.index - 1) + 1;
      const end = text.indexOf('\n', match.index);
      found.push(foundLine(text.slice(start, end)));
      // One line is found once, whatever it holds.
      pattern.lastIndex = end + 1;
    }
  };
  return (lines) => {
    const found: string[] = [];
    // In pieces of whole lines: a string of more than SEARCH_PIECE_BYTES would be a large object for V8 (each one a
    // garbage collection's work of its own), and a relay reads output 1 MiB at a time.
    let from = 0;
    while (lines.length - from > SEARCH_PIECE_BYTES) {
      const cut = lines.lastIndexOf(LF, from + SEARCH_PIECE_BYTES - 1);
      // A longer line (the scanner cuts none past 64 KiB) is searched whole.
      const next = cut >= from ? cut + 1 : lines.indexOf(LF, from + SEARCH_PIECE_BYTES) + 1;
      const to = next > from ? next : lines.length;
      search(lines.subarray(from, to), found);
      from = to;
    }
    search(lines.subarray(from), found);
    return found;
  };
}
