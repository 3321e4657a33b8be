import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { EXIT_FATAL_CODES } from '@spark/config';

/** A child the supervisor keeps running. */
export interface ChildSpec {
  /** Service name, as in the children's own log lines (`connector`, `builder`, …). */
  name: string;
  /** Executable and arguments. */
  command: string;
  args: string[];
  /** ms this child gets to exit after SIGTERM before SIGKILL (default: the supervisor's `stopTimeoutMs`); the builder's follows its DrainTimeout. */
  stopTimeoutMs?: number;
}

/** Options of {@link superviseChildren}. */
export interface SupervisorOptions {
  /** Where the children's log lines go (one JSON object per line). */
  out: NodeJS.WritableStream;
  /** First restart delay in ms after a crash; doubles up to `maxBackoffMs` (default 1000). */
  initialBackoffMs?: number;
  /** Longest restart delay in ms (default 60000). */
  maxBackoffMs?: number;
  /** A child that ran this long (ms) counts as healthy: its backoff starts over (default 60000). */
  stableAfterMs?: number;
  /** ms a child gets to exit after SIGTERM before SIGKILL (default 30000). */
  stopTimeoutMs?: number;
  /**
   * Exit codes that mean "will never work as configured": no restart, the supervisor stops with that code
   * (default EXIT_FATAL_CODES: 64 bad usage, 66 a missing config or key file, 78 a config that does not parse or check).
   */
  fatalExitCodes?: number[];
}

/** A running supervisor. */
export interface Supervisor {
  /** Resolves with the supervisor's exit code once every child has stopped. */
  done: Promise<number>;
  /** Stops intake of restarts, sends SIGTERM to every child, waits; SIGKILL after each child's timeout. Safe to call twice. */
  stop(): Promise<number>;
  /**
   * A second request to stop: SIGTERM again to every child still running (a
   * service exits at once on its second signal, ending what it started), and
   * SIGKILL after `graceMs` (default 5000). Stops first if not stopping yet.
   */
  hurry(graceMs?: number): Promise<number>;
  /** Sends SIGHUP to every running child: each re-reads the config file. */
  reload(): void;
  /** The pid of a child now, or null while it is down. */
  pid(name: string): number | null;
  /** How many times a child was started. */
  starts(name: string): number;
}

interface Slot {
  spec: ChildSpec;
  child: ChildProcess | null;
  starts: number;
  backoffMs: number;
  timer: NodeJS.Timeout | null;
}

/**
 * Runs each child, restarts one that exits with exponential backoff, and
 * forwards its output: JSON log lines as they are, anything else wrapped in a
 * pino-shaped line that carries the service name. A child exiting with a fatal
 * code (a config error) stops the whole supervisor with that code.
 */
export function superviseChildren(specs: readonly ChildSpec[], options: SupervisorOptions): Supervisor {
  const initialBackoffMs = options.initialBackoffMs ?? 1_000;
  const maxBackoffMs = options.maxBackoffMs ?? 60_000;
  const stableAfterMs = options.stableAfterMs ?? 60_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
  const fatal = new Set(options.fatalExitCodes ?? EXIT_FATAL_CODES);
  const slots = new Map<string, Slot>(
    specs.map((spec) => [spec.name, { spec, child: null, starts: 0, backoffMs: initialBackoffMs, timer: null }]),
  );
  let stopping = false;
  let exitCode = 0;
  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => (resolveDone = resolve));

  const log = (level: number, service: string, msg: string, extra: Record<string, unknown> = {}) => {
    options.out.write(`${JSON.stringify({ level, time: Date.now(), service: 'supervisor', child: service, ...extra, msg })}\n`);
  };

  const forward = (service: string, stream: NodeJS.ReadableStream, level: number) => {
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      if (line.startsWith('{') && line.endsWith('}')) {
        options.out.write(`${line}\n`);
      } else if (line.trim() !== '') {
        options.out.write(`${JSON.stringify({ level, time: Date.now(), service, msg: line })}\n`);
      }
    });
  };

  const checkAllDown = () => {
    if (stopping && [...slots.values()].every((slot) => slot.child === null)) resolveDone(exitCode);
  };

  const start = (slot: Slot) => {
    slot.timer = null;
    if (stopping) return;
    const startedAt = Date.now();
    const child = spawn(slot.spec.command, slot.spec.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    slot.child = child;
    slot.starts++;
    forward(slot.spec.name, child.stdout, 30);
    forward(slot.spec.name, child.stderr, 50);
    child.on('error', (error) => log(50, slot.spec.name, `cannot start ${slot.spec.command}: ${error.message}`));
    // 'close', not 'exit': the child's last log lines are forwarded before we act on its end.
    child.on('close', (code, signal) => {
      slot.child = null;
      if (stopping) {
        checkAllDown();
        return;
      }
      if (code !== null && fatal.has(code)) {
        log(
          60,
          slot.spec.name,
          `${slot.spec.name} exited with code ${code} (a configuration or usage error a restart cannot fix): stopping all services`,
          { code },
        );
        exitCode = code;
        void stop();
        return;
      }
      if (Date.now() - startedAt >= stableAfterMs) slot.backoffMs = initialBackoffMs;
      log(50, slot.spec.name, `${slot.spec.name} exited (${signal ?? `code ${code}`}); restarting in ${slot.backoffMs} ms`, {
        code,
        signal,
      });
      slot.timer = setTimeout(() => start(slot), slot.backoffMs);
      slot.backoffMs = Math.min(slot.backoffMs * 2, maxBackoffMs);
    });
  };

  const killers: NodeJS.Timeout[] = [];
  const killAfter = (slot: Slot, ms: number) => {
    const child = slot.child;
    killers.push(
      setTimeout(() => {
        if (child && slot.child === child) {
          log(50, slot.spec.name, `${slot.spec.name} did not stop within ${ms} ms: SIGKILL`);
          child.kill('SIGKILL');
        }
      }, ms),
    );
  };
  let stopped: Promise<number> | null = null;
  const stop = (): Promise<number> => {
    stopped ??= (async () => {
      stopping = true;
      for (const slot of slots.values()) {
        if (slot.timer) clearTimeout(slot.timer);
        slot.timer = null;
        slot.child?.kill('SIGTERM');
        killAfter(slot, slot.spec.stopTimeoutMs ?? stopTimeoutMs);
      }
      checkAllDown();
      const code = await done;
      for (const killer of killers) clearTimeout(killer);
      return code;
    })();
    return stopped;
  };
  const hurry = (graceMs = 5_000): Promise<number> => {
    const result = stop();
    for (const slot of slots.values()) {
      if (!slot.child) continue;
      log(40, slot.spec.name, `second stop request: SIGTERM again to ${slot.spec.name}, SIGKILL in ${graceMs} ms`);
      slot.child.kill('SIGTERM');
      killAfter(slot, graceMs);
    }
    return result;
  };

  for (const slot of slots.values()) start(slot);
  return {
    done,
    stop,
    hurry,
    reload: () => {
      for (const slot of slots.values()) if (!stopping) slot.child?.kill('SIGHUP');
    },
    pid: (name) => slots.get(name)?.child?.pid ?? null,
    starts: (name) => slots.get(name)?.starts ?? 0,
  };
}
