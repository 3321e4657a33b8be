import { execa } from 'execa';
import type { JobLog } from './job-log.js';
import { JobStop, stopReason } from './job-stop.js';

// Commands lead their own process groups, so they would outlive a builder that
// exits abruptly (an uncaught exception); kill them on any exit.
const liveGroups = new Set<number>();
process.on('exit', () => {
  for (const pid of liveGroups) signalTree(pid, 'SIGKILL');
});

/** A command line with the environment it needs on top of the builder's. */
export interface Command {
  file: string;
  args: readonly string[];
  env?: Readonly<Record<string, string>>;
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

/**
 * Runs `command` with stdout and stderr merged into the job log as they come
 * (the file is written chunk by chunk; output pauses only when the disk is
 * behind). The command leads its own process group, so a stop reaches the
 * whole tree: SIGTERM, then SIGKILL after the grace period.
 */
export async function runLogged(command: Command, log: JobLog, options: RunLoggedOptions): Promise<RunOutcome> {
  const { signal } = options;
  if (signal.aborted) return { stopped: stopReason(signal), exitCode: null };
  log.note(`$ ${[command.file, ...command.args].join(' ')}`);
  const child = execa(command.file, command.args, {
    cwd: options.cwd,
    env: { ...command.env },
    extendEnv: true,
    stdin: 'ignore',
    all: true,
    buffer: false,
    reject: false,
    detached: true,
    cleanup: true,
  });
  if (child.pid !== undefined) liveGroups.add(child.pid);
  let stopped: JobStop | null = null;
  let killTimer: NodeJS.Timeout | undefined;
  const stop = (reason: JobStop) => {
    if (stopped || child.exitCode !== null) return;
    stopped = reason;
    log.note(`stopping the command: ${reason.message}`);
    signalTree(child.pid, 'SIGTERM');
    killTimer = setTimeout(() => signalTree(child.pid, 'SIGKILL'), options.killGraceMs);
  };
  let idleTimer: NodeJS.Timeout | undefined;
  const armIdle = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(
      () => stop(new JobStop('idle-output', `no output for ${Math.round(options.idleOutputTimeoutMs / 1000)} s`)),
      options.idleOutputTimeoutMs,
    );
  };
  const onAbort = () => stop(stopReason(signal));
  signal.addEventListener('abort', onAbort, { once: true });
  armIdle();
  const all = child.all;
  all.on('data', (chunk: Buffer) => {
    armIdle();
    if (!log.output(chunk)) {
      all.pause();
      void log.drained().then(() => all.resume());
    }
  });
  try {
    const result = await child;
    // A tree member that outlived its leader must not keep running after the job ends.
    signalTree(child.pid, 'SIGKILL');
    if (result.failed && result.exitCode === undefined && !stopped && result.signal === undefined) {
      log.note(`the command could not be run: ${result.shortMessage}`);
      return { stopped: null, exitCode: 127 };
    }
    if (stopped) return { stopped, exitCode: result.exitCode ?? null };
    return { stopped: null, exitCode: result.exitCode ?? 128 };
  } finally {
    if (child.pid !== undefined) liveGroups.delete(child.pid);
    clearTimeout(idleTimer);
    clearTimeout(killTimer);
    signal.removeEventListener('abort', onAbort);
  }
}

function signalTree(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}
