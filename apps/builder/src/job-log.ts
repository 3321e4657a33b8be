import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdtemp, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getSystemErrorMap, promisify } from 'node:util';
import { JobStop } from './job-stop.js';
import { createOutputWatch } from './output-watch.js';

/*
 * A command's output does not pass through the builder on its way to the log
 * file: a copier process (dd) reads the command's pipe and writes the file,
 * and the builder reads the file back behind it for excerpts, line listeners,
 * the idle limit and MaxLogSize. A command is never slowed down by the
 * builder's reading (docs/architecture.md, "The build log").
 */

/** A job's log: everything goes to the log file as it comes; plain lines go to excerpts and to the line listeners that watch for them. */
export interface JobLog {
  readonly path: string;
  /**
   * Writes one line of the builder's own (what it did, why a job ended);
   * notes are written even past the size limit. A note made while a
   * command's output is open goes to the excerpt at once and into the file
   * once that output is finished (the copier alone writes the file meanwhile).
   */
  note(message: string): void;
  /**
   * Opens the way for one command's output into the file (one at a time).
   * Output past the size limit or after a write error is dropped (from the
   * file, excerpts and listeners alike); either makes the log refuse (see
   * {@link JobLog.onRefusal}). Rejects when the copier cannot be started.
   */
  openOutput(): Promise<LogOutput>;
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
  /** Writes the notes still held and closes the file; rejects with the write error if there was one. Safe to call twice. */
  close(): Promise<void>;
}

/** One command's way into the log, from {@link JobLog.openOutput}. */
export interface LogOutput {
  /** The pipe's writing end (a descriptor): the command's stdout (and stderr), as spawn's stdio. */
  readonly input: number;
  /** Closes the builder's own copy of the writing end; call once the command was started with it (or could not be). */
  release(): void;
  /** `performance.now()` when output last reached the file (the command's sign of life for the idle limit). */
  readonly lastOutputAt: number;
  /**
   * Resolves once the copier has ended (everything that held the pipe closed
   * it) and the log has read all it wrote: true; or false when that took
   * longer than `withinMs` — the copier is then ended (whoever still holds the
   * pipe gets EPIPE) and what it wrote is read. Releases the pipe first.
   */
  finish(withinMs: number): Promise<boolean>;
}

/** Options of {@link openJobLog}. */
export interface JobLogOptions {
  /** Bytes of process output the file may hold (`[builder] MaxLogSize`); unlimited when absent. */
  maxOutputBytes?: number;
}

/**
 * Bytes the builder reads of the file at a time: what it reads is then worked
 * on while it is in the CPU's cache (1 MiB reads cost half as much CPU again).
 */
const READ_BYTES = 256 * 1024;
/** ms the reader waits after catching up with the file, doubled while nothing comes, up to the second. */
const FIRST_NAP_MS = 10;
const LAST_NAP_MS = 160;

/*
 * The copier: dd writes what it reads as it reads it (a partial read from the
 * pipe is written at once, so the file is never behind by more than one read).
 * At its file size limit (prlimit, MaxLogSize) or on a write error it stops,
 * and cat takes over the pipe, dropping what the command still prints until
 * it is stopped (its grace time, not EPIPE). SIGXFSZ is ignored so the limit is
 * an EFBIG write error dd reports, not a signal.
 */
const COPY = `trap '' XFSZ; dd bs=1M status=none; exec cat >/dev/null`;

/** Copiers still running, ended with the builder (each leads its own process group). */
const liveCopiers = new Set<number>();
process.on('exit', () => {
  for (const pid of liveCopiers) signalGroup(pid, 'SIGKILL');
});

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Gone already.
  }
}

/**
 * Creates the log file at `path` as a new file: an older file of that name is
 * unlinked first, so a run that lost its job to another builder keeps
 * writing into its own (unlinked) file, never into this one. Rejects when the
 * file cannot be created.
 */
export async function openJobLog(path: string, options: JobLogOptions = {}): Promise<JobLog> {
  await rm(path, { force: true });
  // Read back through the same description the copier writes: the file the builder reads is the one written, whatever
  // is later done to the path.
  const file: FileHandle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_APPEND, 0o644);
  const maxOutputBytes = options.maxOutputBytes ?? Number.POSITIVE_INFINITY;
  const watch = createOutputWatch();
  let outputBytes = 0;
  let refusal: JobStop | null = null;
  let writeError: Error | null = null;
  const refusalListeners = new Set<(stop: JobStop) => void>();
  const refuse = (stop: JobStop) => {
    if (refusal) return;
    refusal = stop;
    for (const listener of refusalListeners) listener(stop);
    refusalListeners.clear();
  };
  const failWrite = (error: Error) => {
    writeError ??= error;
    refuse(new JobStop('log-error', `cannot write the job log ${path}: ${error.message}`));
  };

  // The builder's own writes (notes), in order; none while a copier writes the file.
  let writes: Promise<void> = Promise.resolve();
  let held: string[] | null = null;
  let current: LogOutput | null = null;
  let closed: Promise<void> | null = null;
  const append = (text: string) => {
    writes = writes.then(async () => {
      if (writeError !== null) return;
      await file.write(text).catch(failWrite);
    });
  };

  const openOutput = async (): Promise<LogOutput> => {
    if (held !== null) throw new Error(`the job log ${path} takes one command's output at a time`);
    if (closed !== null) throw new Error(`the job log ${path} is closed`);
    held = [];
    try {
      return await startCopier();
    } catch (error) {
      // No copier: what was noted meanwhile goes into the file now, and the next command may try again.
      const notes = held;
      held = null;
      for (const text of notes) append(text);
      throw error;
    }
  };

  const startCopier = async (): Promise<LogOutput> => {
    await writes;
    let position = (await file.stat()).size;
    const room = maxOutputBytes - outputBytes;
    const limit = Number.isFinite(room) ? position + Math.max(0, room) : null;
    const inherited = await fileSizeLimit();
    const pipe = await openPipe();
    let copier: ChildProcess;
    try {
      // The file may grow to `limit` at most; a lower limit the builder inherited is the copier's as it is (EFBIG).
      copier =
        limit !== null && (inherited === null || limit < inherited)
          ? spawn('/bin/sh', ['-c', 'exec prlimit --fsize="$1": /bin/sh -c "$2"', 'sh', String(limit), COPY], {
              stdio: [pipe.read.fd, file.fd, 'pipe'],
              detached: true,
            })
          : spawn('/bin/sh', ['-c', COPY], { stdio: [pipe.read.fd, file.fd, 'pipe'], detached: true });
    } catch (error) {
      await Promise.all([pipe.read.close(), pipe.write.close()]);
      throw error;
    }
    // The reader naps when it has caught up with the file; the copier's end wakes it.
    let wake = () => {};
    const nap = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    const pid = copier.pid;
    if (pid !== undefined) liveCopiers.add(pid);
    let copierEnded = false;
    const copierExit = new Promise<void>((resolve) => {
      copier.once('close', () => resolve());
      copier.once('error', (error) => {
        failWrite(new Error(`cannot start the log copier: ${error.message}`));
        resolve();
      });
    }).then(() => {
      copierEnded = true;
      if (pid !== undefined) liveCopiers.delete(pid);
      wake();
    });
    // dd says why it stopped writing (its first line): the size limit, or a write error.
    let complaint = '';
    let complained = false;
    copier.stderr?.setEncoding('utf8');
    copier.stderr?.on('data', (text: string) => {
      if (complained) return;
      complaint += text;
      if (!complaint.includes('\n')) return;
      complained = true;
      const message = complaint.slice(0, complaint.indexOf('\n'));
      void file.stat().then(
        ({ size }) => {
          if (limit !== null && size >= limit) refuse(sizeStop());
          else failWrite(copierError(message));
        },
        () => failWrite(copierError(message)),
      );
    });
    // The copier holds the reading end now; the builder never reads the pipe.
    await pipe.read.close().catch(() => undefined);

    let released: Promise<void> | null = null;
    let finishing: Promise<boolean> | null = null;
    const output = {
      input: pipe.write.fd,
      lastOutputAt: performance.now(),
      release: () => void (released ??= pipe.write.close()),
      finish: (withinMs: number) => (finishing ??= finish(withinMs)),
    };
    current = output;
    const finish = async (withinMs: number) => {
      output.release();
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        copierExit.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), withinMs))),
      ]);
      clearTimeout(timer);
      if (!inTime && pid !== undefined) signalGroup(pid, 'SIGKILL');
      await copierExit;
      await reading;
      const notes = held ?? [];
      held = null;
      current = null;
      for (const text of notes) append(text);
      return inTime;
    };
    // The reader: behind the copier, to the end of what it wrote once it has ended.
    const reading = (async () => {
      let buffer = Buffer.allocUnsafe(READ_BYTES);
      let napMs = 0;
      for (;;) {
        const ended = copierEnded;
        let bytesRead: number;
        try {
          ({ bytesRead } = await file.read(buffer, 0, READ_BYTES, position));
        } catch (error) {
          failWrite(error as Error);
          return;
        }
        if (bytesRead > 0) {
          position += bytesRead;
          output.lastOutputAt = performance.now();
          // The watch keeps pieces of what it is given: each read gets a buffer of its own.
          take(buffer.subarray(0, bytesRead));
          buffer = Buffer.allocUnsafe(READ_BYTES);
          if (bytesRead === READ_BYTES) continue;
        }
        if (ended) return;
        napMs = bytesRead > 0 ? FIRST_NAP_MS : Math.min(LAST_NAP_MS, Math.max(FIRST_NAP_MS, napMs * 2));
        await nap(napMs);
      }
    })();
    return output;
  };

  const sizeStop = () => new JobStop('log-size', `the build log reached MaxLogSize (${maxOutputBytes} bytes of output)`);
  const take = (chunk: Buffer) => {
    outputBytes += chunk.length;
    watch.output(chunk);
    if (outputBytes >= maxOutputBytes) refuse(sizeStop());
  };

  return {
    path,
    note(message) {
      const text = `[spark-builder] ${message}\n`;
      watch.note(text);
      if (held !== null) held.push(text);
      else if (closed === null) append(text);
    },
    openOutput,
    onRefusal(listener) {
      if (refusal) {
        listener(refusal);
        return () => undefined;
      }
      refusalListeners.add(listener);
      return () => refusalListeners.delete(listener);
    },
    onLine(needles, listener) {
      return watch.onLine(needles, listener);
    },
    takeExcerpt() {
      return watch.takeExcerpt();
    },
    close() {
      closed ??= (async () => {
        // A command's output still open (its run failed on the way) is ended first.
        if (current !== null) await current.finish(0);
        watch.end();
        await writes;
        await file.close();
        if (writeError !== null) throw writeError;
      })();
      return closed;
    },
  };
}

const run = promisify(execFile);

/**
 * A pipe, both ends opened blocking: a FIFO made in a private directory and
 * unlinked once open. Node's own pipes for a child's stdio are socket pairs,
 * which carry a flood of output a third slower (docs/benchmarks.md).
 */
async function openPipe(): Promise<{ read: FileHandle; write: FileHandle }> {
  const dir = await mkdtemp(join(tmpdir(), 'spark-log-pipe-'));
  try {
    const path = join(dir, 'pipe');
    await run('mkfifo', ['-m', '0600', path]);
    // Neither open blocks: the first end is opened for both (a reader and a writer exist), then let go.
    const both = await open(path, constants.O_RDWR);
    try {
      const read = await open(path, constants.O_RDONLY);
      const write = await open(path, constants.O_WRONLY).catch(async (error: unknown) => {
        await read.close();
        throw error;
      });
      return { read, write };
    } finally {
      await both.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The soft limit on file size this process passes on to its children (`ulimit -f`), in bytes; null when unlimited. */
async function fileSizeLimit(): Promise<number | null> {
  const limits = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  const soft = /^Max file size\s+(\S+)/m.exec(limits)?.[1];
  return soft === undefined || soft === 'unlimited' ? null : Number(soft);
}

/**
 * dd's complaint (`dd: error writing 'standard output': No space left on
 * device`) as an error whose message starts with the errno's name, as Node
 * names a failed write (`ENOSPC: no space left on device`).
 */
function copierError(complaint: string): Error {
  const reason = complaint.slice(complaint.lastIndexOf(': ') + 2).trim();
  for (const [, [name, description]] of getSystemErrorMap()) {
    if (description.toLowerCase() === reason.toLowerCase()) {
      return Object.assign(new Error(`${name}: ${description} (the log copier: ${complaint.trim()})`), { code: name });
    }
  }
  return new Error(`the log copier: ${complaint.trim()}`);
}
