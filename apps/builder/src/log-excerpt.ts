import { MAX_LOG_EXCERPT_CHARS } from '@spark/protocol';

/** Collects log text between two status reports, keeping only the tail. */
export interface ExcerptBuffer {
  append(text: string): void;
  /** The text gathered since the last call (tail-bounded, marked when cut), or null when there is none. */
  take(): string | null;
}

/**
 * A buffer that never holds much more than `maxChars`: a build that prints
 * 200 MB between two reports sends its last `maxChars` characters, preceded
 * by a line saying how much was left out (the log file keeps everything).
 */
export function createExcerptBuffer(maxChars: number = MAX_LOG_EXCERPT_CHARS): ExcerptBuffer {
  let chunks: string[] = [];
  let size = 0;
  let dropped = 0;
  return {
    append(text) {
      if (text === '') return;
      chunks.push(text);
      size += text.length;
      if (size > maxChars * 2) {
        const joined = chunks.join('');
        const keep = joined.slice(joined.length - maxChars);
        dropped += joined.length - keep.length;
        chunks = [keep];
        size = keep.length;
      }
    },
    take() {
      if (size === 0 && dropped === 0) return null;
      let text = chunks.join('');
      let cut = dropped;
      if (text.length > maxChars) {
        cut += text.length - maxChars;
        text = text.slice(text.length - maxChars);
      }
      chunks = [];
      size = 0;
      dropped = 0;
      return cut > 0 ? `[… ${cut} characters of output left out; the full log is kept on the worker …]\n${text}` : text;
    },
  };
}
