import { createWriteStream, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { JobStop } from './job-stop.js';
import { createExcerptBuffer } from './log-excerpt.js';
import { createLineMatcher, createLineScanner } from './terminal-text.js';

/** A job's log: everything goes to the log file as it comes; plain lines go to excerpts and to the line listeners that watch for them. */
export interface JobLog {
  readonly path: string;
  /** Writes one line of the builder's own (what it did, why a job ended); notes are written even past the size limit. */
  note(message: string): void;
  /**
   * Writes process output as it came; false when the file is behind (wait for
   * {@link JobLog.drained}). Output past the size limit or after a write error
   * is dropped from the file (it still reaches excerpts and line listeners).
   */
  output(chunk: Buffer): boolean;
  /** Resolves once the file has caught up with what was written, or can take nothing more (failed, full, closed). */
  drained(): Promise<void>;
  /**
   * Calls `listener` once the log can take no more output: a `log-error` stop
   * when the file cannot be written (disk full, `EFBIG`), a `log-size` stop
   * when output reached the size limit. Called at once if that happened
   * already; returns a function that removes the listener.
   */
  onRefusal(listener: (stop: JobStop) => void): () => void;
  /**
   * Calls `listener` with every complete line of output that holds one of
   * `needles` once terminal escapes are removed, as that plain text (a needle
   * broken by a bare CR is not found). Output is searched as bytes: lines
   * holding no needle are not decoded. Throws on an empty needle, or one
   * holding LF, CR or ESC. Returns a function that removes the listener: its
   * needles are no longer searched for unless another listener holds them (a
   * listener that has seen enough stops costing anything).
   */
  onLine(needles: readonly string[], listener: (line: string) => void): () => void;
  /** The output since the last call, for a status report; null when nothing new. */
  takeExcerpt(): string | null;
  /** Flushes and closes the file; rejects with the write error if there was one. Never waits on a failed file. Safe to call twice. */
  close(): Promise<void>;
}

/** Options of {@link openJobLog}. */
export interface JobLogOptions {
  /** Bytes of process output the file may hold (`[builder] MaxLogSize`); unlimited when absent. */
  maxOutputBytes?: number;
}

/** Bytes the log file's write stream buffers before the relay waits for it (the pipe is paused meanwhile). */
const WRITE_BUFFER_BYTES = 1024 * 1024;

/**
 * Creates the log file at `path` as a new file: an older file of that name is
 * unlinked first, so a run that lost its job to another builder keeps
 * writing into its own (unlinked) file, never into this one. Rejects when the
 * file cannot be created.
 */
export async function openJobLog(path: string, options: JobLogOptions = {}): Promise<JobLog> {
  await rm(path, { force: true });
  // A pipe read is up to 64 KiB: a buffer of a few reads lets the file take them without pausing the pipe each time.
  const file: WriteStream = createWriteStream(path, { flags: 'wx', mode: 0o644, highWaterMark: WRITE_BUFFER_BYTES });
  await new Promise<void>((resolve, reject) => {
    file.once('open', () => resolve());
    file.once('error', reject);
  });
  const maxOutputBytes = options.maxOutputBytes ?? Number.POSITIVE_INFINITY;
  let outputBytes = 0;
  let refusal: JobStop | null = null;
  let writeError: Error | null = null;
  const refusalListeners = new Set<(stop: JobStop) => void>();
  const waiters = new Set<() => void>();
  const wakeWaiters = () => {
    for (const wake of waiters) wake();
    waiters.clear();
  };
  const refuse = (stop: JobStop) => {
    if (refusal) return;
    refusal = stop;
    for (const listener of refusalListeners) listener(stop);
    refusalListeners.clear();
    wakeWaiters();
  };
  file.on('error', (error) => {
    writeError ??= error;
    refuse(new JobStop('log-error', `cannot write the job log ${path}: ${error.message}`));
  });
  file.on('drain', wakeWaiters);

  const scanner = createLineScanner();
  const excerpt = createExcerptBuffer();
  type LineListener = { needles: readonly string[]; listener: (line: string) => void; removed: boolean };
  let lineListeners: LineListener[] = [];
  let matchLines: (lines: Buffer) => string[] = () => [];
  // One search for the needles of every listener.
  const rebuildMatcher = () => {
    matchLines = createLineMatcher([...new Set(lineListeners.flatMap((entry) => entry.needles))]);
  };
  let closed: Promise<void> | null = null;
  const writable = () => closed === null && writeError === null;

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
    path,
    note(message) {
      const text = `[spark-builder] ${message}\n`;
      if (writable()) file.write(text);
      excerpt.append(text);
    },
    output(chunk) {
      handleLines(scanner.push(chunk));
      if (!writable() || outputBytes >= maxOutputBytes) return true;
      const room = maxOutputBytes - outputBytes;
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      outputBytes += part.length;
      const caughtUp = file.write(part);
      if (outputBytes >= maxOutputBytes) {
        refuse(new JobStop('log-size', `the build log reached MaxLogSize (${maxOutputBytes} bytes of output)`));
      }
      return caughtUp || !writable();
    },
    drained() {
      if (!writable() || !file.writableNeedDrain || refusal?.kind === 'log-error') return Promise.resolve();
      return new Promise((resolve) => waiters.add(resolve));
    },
    onRefusal(listener) {
      if (refusal) {
        listener(refusal);
        return () => undefined;
      }
      refusalListeners.add(listener);
      return () => refusalListeners.delete(listener);
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
    close() {
      closed ??= (async () => {
        handleLines(scanner.end());
        wakeWaiters();
        if (writeError === null) {
          // end() reports an error that happens while flushing; a stream that failed already is destroyed instead.
          await new Promise<void>((resolve) => {
            const done = () => resolve();
            file.once('error', done);
            file.end(done);
          });
        }
        if (writeError !== null) {
          file.destroy();
          throw writeError;
        }
      })();
      return closed;
    },
  };
}
