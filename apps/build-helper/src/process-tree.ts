import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** ms between SIGTERM and SIGKILL when the helper stops a run (default 5000: within the builder's own 10 s grace for sudo). */
export const DEFAULT_KILL_GRACE_MS = 5_000;

/** One process as /proc shows it: its parent and start time (so a reused pid is not mistaken for it). */
interface ProcEntry {
  pid: number;
  ppid: number;
  start: string;
}

function readProc(): ProcEntry[] {
  const entries: ProcEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces and parentheses): state ppid … starttime (22nd).
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      entries.push({ pid: Number(name), ppid: Number(fields[1]), start: fields[19] ?? '' });
    } catch {
      // Exited while we looked.
    }
  }
  return entries;
}

/** The parent pid of `pid` (0 when it is gone). */
export function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/**
 * The processes a run started, as far as they can be found: its process group
 * and every descendant of its leader (systemd-nspawn's container lives in
 * other groups and sessions). Descendants seen once are remembered with their
 * start time, since an orphan is re-parented away from the tree.
 */
export class ProcessTree {
  private readonly known = new Map<number, string>();

  constructor(private readonly leader: number) {}

  /** Adds the leader's current descendants to the known processes. */
  refresh(): void {
    const entries = readProc();
    const children = new Map<number, ProcEntry[]>();
    for (const entry of entries) children.set(entry.ppid, [...(children.get(entry.ppid) ?? []), entry]);
    const queue = [this.leader];
    while (queue.length > 0) {
      for (const child of children.get(queue.shift() as number) ?? []) {
        if (!this.known.has(child.pid)) this.known.set(child.pid, child.start);
        queue.push(child.pid);
      }
    }
    // Forget what has exited, or whose pid now belongs to another process.
    const alive = new Map(entries.map((entry) => [entry.pid, entry.start]));
    for (const [pid, start] of this.known) if (alive.get(pid) !== start) this.known.delete(pid);
  }

  /** How many processes of the tree are alive (the group counts as one while it has members). */
  alive(): number {
    this.refresh();
    let group = 0;
    try {
      process.kill(-this.leader, 0);
      group = 1;
    } catch {
      // The group is empty.
    }
    return this.known.size + group;
  }

  /** Sends `signal` to the group and every known member. */
  signal(signal: NodeJS.Signals): void {
    this.refresh();
    try {
      process.kill(-this.leader, signal);
    } catch {
      // The group is empty.
    }
    for (const pid of this.known.keys()) {
      try {
        process.kill(pid, signal);
      } catch {
        // Gone already.
      }
    }
  }
}

/** Options of {@link runOwned}. */
export interface RunOwnedOptions {
  env: Record<string, string>;
  cwd: string;
  /** ms between SIGTERM and SIGKILL. */
  killGraceMs: number;
  /** Resolves (with a reason) when the run must be stopped: a signal to the helper, its caller gone. */
  stopWhen: Promise<string>;
  /** Called once when the run is being stopped. */
  onStop?: (reason: string) => void;
}

/** How a run ended. */
export interface OwnedOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Why it was stopped, or null when it ended by itself. */
  stopped: string | null;
}

/**
 * Runs `file` in its own process group with the helper's stdout and stderr
 * and owns what it starts: when `stopWhen` resolves, SIGTERM to the group and
 * every descendant, SIGKILL after the grace; when it ends by itself, whatever
 * it left behind is killed.
 */
export async function runOwned(file: string, args: readonly string[], options: RunOwnedOptions): Promise<OwnedOutcome> {
  const child = spawn(file, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error: Error | null }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('exit', (code, signal) => resolve({ code, signal, error: null }));
  });
  const pid = child.pid;
  if (pid === undefined) {
    const { error } = await exited;
    throw new Error(`cannot run ${file}: ${error?.message ?? 'no process'}`);
  }
  const tree = new ProcessTree(pid);
  const watch = setInterval(() => tree.refresh(), 1000);
  let stopped: string | null = null;
  let killTimer: NodeJS.Timeout | undefined;
  void options.stopWhen.then((reason) => {
    if (stopped !== null) return;
    stopped = reason;
    options.onStop?.(reason);
    tree.signal('SIGTERM');
    killTimer = setTimeout(() => tree.signal('SIGKILL'), options.killGraceMs);
  });
  const { code, signal, error } = await exited;
  clearInterval(watch);
  // Members that outlived the leader: the rest of the grace when stopping, none otherwise.
  if (stopped !== null) {
    const deadline = Date.now() + options.killGraceMs;
    while (tree.alive() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  tree.signal('SIGKILL');
  clearTimeout(killTimer);
  if (error) throw new Error(`cannot run ${file}: ${error.message}`);
  return { exitCode: code, signal, stopped };
}
