import { createExcerptBuffer } from './log-excerpt.js';
import { createLineMatcher, createLineScanner } from './terminal-text.js';

/**
 * What the builder reads of a job's output as it comes: excerpts for status
 * reports and the line listeners (a missing image, unmet dependencies,
 * compiler warnings). It sees the output as byte chunks cut anywhere; plain
 * lines are made of them only where someone reads them.
 */
export interface OutputWatch {
  /** Adds a text of the builder's own (a note) to the excerpt. */
  note(text: string): void;
  /** Takes a chunk of process output, cut anywhere (inside a line, a character, an escape sequence). */
  output(chunk: Buffer): void;
  /** The output ended: an unterminated last line is taken as a line. */
  end(): void;
  /** As {@link JobLog.onLine}. */
  onLine(needles: readonly string[], listener: (line: string) => void): () => void;
  /** The output and notes since the last call, for a status report; null when nothing new. */
  takeExcerpt(): string | null;
}

export function createOutputWatch(): OutputWatch {
  const scanner = createLineScanner();
  const excerpt = createExcerptBuffer();
  type LineListener = { needles: readonly string[]; listener: (line: string) => void; removed: boolean };
  let lineListeners: LineListener[] = [];
  let matchLines: (lines: Buffer) => string[] = () => [];
  // One search for the needles of every listener.
  const rebuildMatcher = () => {
    matchLines = createLineMatcher([...new Set(lineListeners.flatMap((entry) => entry.needles))]);
  };

  const handleLines = (runs: readonly Buffer[]) => {
    for (const lines of runs) {
      excerpt.appendOutput(lines);
      if (lineListeners.length === 0) continue;
      for (const line of matchLines(lines)) {
        for (const entry of lineListeners) {
          if (!entry.removed && entry.needles.some((needle) => line.includes(needle))) entry.listener(line);
        }
      }
    }
  };

  return {
    note(text) {
      excerpt.append(text);
    },
    output(chunk) {
      handleLines(scanner.push(chunk));
    },
    end() {
      handleLines(scanner.end());
    },
    onLine(needles, listener) {
      // Throws on a needle that could never match, before anything is changed.
      createLineMatcher(needles);
      const entry: LineListener = { needles: [...needles], listener, removed: false };
      lineListeners = [...lineListeners, entry];
      rebuildMatcher();
      return () => {
        if (entry.removed) return;
        // A new array: a run being handed out keeps going over the old one (the removed entry is skipped).
        entry.removed = true;
        lineListeners = lineListeners.filter((other) => other !== entry);
        rebuildMatcher();
      };
    },
    takeExcerpt() {
      return excerpt.take();
    },
  };
}
