import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { JobLog } from './job-log.js';
import { JobStop, stopReason } from './job-stop.js';
import { endProcessTree, signalProcessGroup, type SignalTree } from './process-tree.js';

// Commands lead their own process groups, so they would outlive a builder that
// exits abruptly (an uncaught exception); kill them on any exit.
const liveTrees = new Map<number, SignalTree>();
process.on('exit', () => {
  for (const [pid, signalTree] of liveTrees) signalTree(pid, 'SIGKILL');
});

/** A command line with the environment it needs on top of the builder's. */
export interface Command {
  file: string;
  args: readonly string[];
  env?: Readonly<Record<string, string>>;
  /**
   * How a stop reaches everything the command started (default: its process
   * group, which the command leads). A command that runs a privileged helper
   * passes the helper's own way (SIGTERM to the helper, which ends its tree).
   */
  signalTree?: SignalTree;
}

/** Options of {@link runLogged}. */
export interface RunLoggedOptions {
  cwd?: string;
  /** ms without a byte of output after which the command is stopped. */
  idleOutputTimeoutMs: number;
  /** ms between SIGTERM and SIGKILL when the command is stopped. */
  killGraceMs: number;
  /** Aborting stops the command (its reason should be a {@link JobStop}). */
  signal: AbortSignal;
}

/** How a command ended: its exit code, or why it was stopped. */
export type RunOutcome = { stopped: null; exitCode: number } | { stopped: JobStop; exitCode: number | null };

/*
 * Once the command's tree is gone, whatever still holds the output pipe escaped
 * the tree (a daemon in a session of its own): the copier is ended after this
 * long (the escaped process gets EPIPE). And a process that SIGKILL did not end (stuck in the kernel)
 * is given up on after this long, so the job still ends.
 */
const PIPE_CLOSE_MS = 2_000;
const AFTER_KILL_MS = 5_000;

/**
 * Runs `command` with its stdout and stderr as one pipe (`2>&1` in the
 * command's own shell, as spark's `stderr=STDOUT`: one order, no fused
 * lines) into the job log as it comes ({@link JobLog.openOutput}). The command leads its own process
 * group. However the command ends — its exit, no output for
 * `idleOutputTimeoutMs`, the log refusing more (full, or failing to write),
 * or `signal` (time limit, cancel, drain, lost lock) — the whole tree is
 * ended (SIGTERM, `killGraceMs`, SIGKILL) and the outcome returned within
 * about `killGraceMs` + 7 s, whatever holds the pipe.
 */
export async function runLogged(command: Command, log: JobLog, options: RunLoggedOptions): Promise<RunOutcome> {
  const { signal } = options;
  if (signal.aborted) return { stopped: stopReason(signal), exitCode: null };
  log.note(`$ ${[command.file, ...command.args].join(' ')}`);
  const signalTree = command.signalTree ?? signalProcessGroup;
  const output = await log.openOutput();
  let child;
  try {
    child = spawn('/bin/sh', ['-c', 'exec 2>&1; exec "$@"', 'sh', command.file, ...command.args], {
      cwd: options.cwd,
      env: { ...process.env, ...command.env },
      stdio: ['ignore', output.input, 'ignore'],
      detached: true,
    });
  } finally {
    // The command holds the pipe now: once it and all it started close it, the copier ends.
    output.release();
  }
  const pid = child.pid;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null } | { error: Error }>((resolve) => {
    child.once('exit', (code, exitSignal) => resolve({ code, signal: exitSignal }));
    child.once('error', (error) => resolve({ error }));
  });
  if (pid !== undefined) liveTrees.set(pid, signalTree);

  let stopped: JobStop | null = null;
  let ending: Promise<void> | null = null;
  let stopRequested = () => {};
  const stopping = new Promise<void>((resolve) => (stopRequested = resolve));
  const endTree = () => {
    if (pid !== undefined) ending ??= endProcessTree(pid, signalTree, options.killGraceMs, AFTER_KILL_MS);
    return ending ?? Promise.resolve();
  };
  const stop = (reason: JobStop) => {
    if (stopped) return;
    stopped = reason;
    log.note(`stopping the command: ${reason.message}`);
    void endTree();
    stopRequested();
  };

  // One timer for the idle limit, moved on only when it fires: the log notes when output last came.
  let idleTimer: NodeJS.Timeout | undefined;
  const checkIdle = () => {
    const quiet = performance.now() - output.lastOutputAt;
    if (quiet >= options.idleOutputTimeoutMs) {
      stop(new JobStop('idle-output', `no output for ${Math.round(options.idleOutputTimeoutMs / 1000)} s`));
    } else {
      idleTimer = setTimeout(checkIdle, options.idleOutputTimeoutMs - quiet);
    }
  };
  const onAbort = () => stop(stopReason(signal));
  signal.addEventListener('abort', onAbort, { once: true });
  const stopOnRefusal = log.onRefusal(stop);
  idleTimer = setTimeout(checkIdle, options.idleOutputTimeoutMs);

  try {
    // A leader that even SIGKILL does not end (stuck in the kernel) is given up on once the tree was ended.
    const givenUp = stopping.then(endTree).then(() => timeout(1_000).then(() => null));
    let ended = await Promise.race([exited, givenUp]);
    if (ended === null) {
      await output.finish(0);
      log.note(`the command (pid ${pid}) did not exit after SIGKILL; giving up on it`);
      return { stopped: stopped ?? new JobStop('cancelled', 'the command did not exit'), exitCode: null };
    }
    // The leader is gone; whatever it started is not allowed to outlive it.
    await endTree();
    if (!(await output.finish(PIPE_CLOSE_MS))) {
      log.note('the output pipe stayed open after the command ended (a process outside its process group holds it); closed it');
    }
    if ('error' in ended) {
      log.note(`the command could not be run: ${ended.error.message}`);
      ended = { code: 127, signal: null };
    }
    if (stopped) return { stopped, exitCode: ended.code };
    if (ended.code !== null) return { stopped: null, exitCode: ended.code };
    log.note(`the command was killed by ${ended.signal ?? 'a signal'}`);
    // The shell's convention for a command killed by a signal.
    return { stopped: null, exitCode: 128 + (ended.signal ? constants.signals[ended.signal] : 0) };
  } finally {
    // However this ended (a throw on the way), the copier does not outlive the run.
    await output.finish(0);
    if (pid !== undefined) liveTrees.delete(pid);
    clearTimeout(idleTimer);
    stopOnRefusal();
    signal.removeEventListener('abort', onAbort);
  }
}

function timeout(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
