import { createWriteStream, type WriteStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { createExcerptBuffer } from './log-excerpt.js';
import { createLineSplitter, plainText } from './terminal-text.js';

/** A job's log: everything goes to the log file as it comes; plain lines go to excerpts and line listeners. */
export interface JobLog {
  readonly path: string;
  /** Writes one line of the builder's own (what it did, why a job ended). */
  note(message: string): void;
  /** Writes process output as it came; false when the file is behind (wait for {@link JobLog.drained}). */
  output(chunk: Buffer): boolean;
  /** Resolves once the file has caught up with what was written. */
  drained(): Promise<void>;
  /** Calls `listener` with every complete line of output, terminal escapes removed. */
  onLine(listener: (line: string) => void): void;
  /** The output since the last call, for a status report; null when nothing new. */
  takeExcerpt(): string | null;
  /** Flushes and closes the file. Safe to call twice. */
  close(): Promise<void>;
}

/** Creates (truncates) the log file at `path`; rejects when it cannot be opened. */
export async function openJobLog(path: string): Promise<JobLog> {
  const file: WriteStream = createWriteStream(path, { flags: 'w', mode: 0o644 });
  await new Promise<void>((resolve, reject) => {
    file.once('open', () => resolve());
    file.once('error', reject);
  });
  let writeError: Error | null = null;
  file.on('error', (error) => (writeError = error));
  const decoder = new StringDecoder('utf8');
  const splitter = createLineSplitter();
  const excerpt = createExcerptBuffer();
  const listeners: ((line: string) => void)[] = [];
  let closed: Promise<void> | null = null;

  const handleLines = (completed: readonly string[]) => {
    if (completed.length === 0) return;
    const plain = completed.map(plainText);
    excerpt.append(`${plain.join('\n')}\n`);
    for (const listener of listeners) for (const line of plain) listener(line);
  };

  return {
    path,
    note(message) {
      const text = `[spark-builder] ${message}\n`;
      if (!closed) file.write(text);
      excerpt.append(text);
    },
    output(chunk) {
      handleLines(splitter.push(decoder.write(chunk)));
      return closed ? true : file.write(chunk);
    },
    drained() {
      return file.writableNeedDrain && !closed ? new Promise((resolve) => file.once('drain', () => resolve())) : Promise.resolve();
    },
    onLine(listener) {
      listeners.push(listener);
    },
    takeExcerpt() {
      return excerpt.take();
    },
    close() {
      closed ??= (async () => {
        handleLines(splitter.push(decoder.end()));
        handleLines(splitter.end());
        await new Promise<void>((resolve) => file.end(() => resolve()));
        if (writeError) throw writeError;
      })();
      return closed;
    },
  };
}
