import { MAX_LOG_EXCERPT_CHARS } from '@spark/protocol';
import { plainLines } from './terminal-text.js';

/** Collects log text between two status reports, keeping only the tail. */
export interface ExcerptBuffer {
  /** Adds a text of the builder's own (a note), as it is. */
  append(text: string): void;
  /** Adds complete lines of process output as bytes (LF-terminated UTF-8); they are made plain text only if they are sent. */
  appendOutput(lines: Buffer): void;
  /** The text gathered since the last call (tail-bounded, marked when cut), or null when there is none. */
  take(): string | null;
}

/**
 * A buffer that never holds much more than `maxBytes` of output (default four
 * times `maxChars`): a build that prints 200 MB between two reports sends its
 * last `maxChars` characters at most, preceded by a line saying how many bytes
 * were left out (the log file keeps everything). Output is kept as it came and
 * decoded only by `take`, for the part that is sent.
 */
export function createExcerptBuffer(maxChars: number = MAX_LOG_EXCERPT_CHARS, maxBytes = 4 * maxChars): ExcerptBuffer {
  let parts: (Buffer | string)[] = [];
  let sizes: number[] = [];
  let size = 0;
  let dropped = 0;
  const add = (part: Buffer | string, bytes: number) => {
    if (bytes === 0) return;
    parts.push(part);
    sizes.push(bytes);
    size += bytes;
    // Whole parts are dropped from the front while what remains still holds maxBytes.
    let first = 0;
    while (size - (sizes[first] as number) >= maxBytes) {
      size -= sizes[first] as number;
      dropped += sizes[first] as number;
      first++;
    }
    if (first > 0) {
      parts = parts.slice(first);
      sizes = sizes.slice(first);
    }
  };
  return {
    append(text) {
      add(text, Buffer.byteLength(text));
    },
    appendOutput(lines) {
      add(lines, lines.length);
    },
    take() {
      if (size === 0 && dropped === 0) return null;
      // From the newest part back, until maxChars characters of plain text are gathered.
      const texts: string[] = [];
      let chars = 0;
      let cut = dropped;
      let i = parts.length - 1;
      for (; i >= 0; i--) {
        const part = parts[i] as Buffer | string;
        const text = typeof part === 'string' ? part : plainLines(part);
        if (chars + text.length <= maxChars) {
          texts.push(text);
          chars += text.length;
          continue;
        }
        const room = maxChars - chars;
        if (typeof part === 'string') {
          texts.push(part.slice(part.length - room));
          cut += Buffer.byteLength(part.slice(0, part.length - room));
        } else {
          // A byte tail of `room` bytes is at most `room` characters. It starts at a line if it holds one; else it is
          // left out, unless nothing else would be shown (one long line): then it starts at a character.
          let start = part.length - room;
          const lineEnd = part.indexOf(0x0a, start);
          if (lineEnd !== -1 && lineEnd + 1 < part.length) start = lineEnd + 1;
          else if (texts.length > 0) start = part.length;
          else while (start < part.length && ((part[start] as number) & 0xc0) === 0x80) start++;
          texts.push(plainLines(part.subarray(start)));
          cut += start;
        }
        break;
      }
      for (let j = i - 1; j >= 0; j--) cut += sizes[j] as number;
      parts = [];
      sizes = [];
      size = 0;
      dropped = 0;
      const text = texts.reverse().join('');
      return cut > 0 ? `[… ${cut} bytes of output left out; the full log is kept on the worker …]\n${text}` : text;
    },
  };
}
