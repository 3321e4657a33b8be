import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** The result of a command run in the machine. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A booted systemd-nspawn machine. */
export interface Machine {
  name: string;
  /** Host pid of the machine's PID 1 (its systemd). */
  leader: number;
  /** Runs a command in all the machine's namespaces (nsenter); never throws for an exit code. */
  exec(args: readonly string[], options?: { input?: string; timeoutMs?: number }): Promise<ExecResult>;
  /** Like exec, but throws with the output when the exit code is not 0. */
  sh(script: string, options?: { input?: string; timeoutMs?: number }): Promise<string>;
  /** Powers the machine off and waits for systemd-nspawn to exit (kills it after `timeoutMs`). */
  powerOff(timeoutMs?: number): Promise<void>;
}

/** Options of {@link bootMachine}. */
export interface BootOptions {
  rootfs: string;
  name: string;
  /** `host path → machine path`, read-only. */
  bindReadOnly: Record<string, string>;
  /** `host path → machine path`, writable. */
  bind: Record<string, string>;
  /** Console output of the boot. */
  onOutput?: (text: string) => void;
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** The machine's PID 1: systemd-nspawn forks an inner nspawn, whose child execs systemd. */
function findLeader(nspawn: number): number | null {
  const queue = [nspawn];
  while (queue.length > 0) {
    const pid = queue.shift() as number;
    for (const child of childrenOf(pid)) {
      if (comm(child) === 'systemd') return child;
      queue.push(child);
    }
  }
  return null;
}

/**
 * Boots `rootfs` with systemd as PID 1: `systemd-nspawn --keep-unit
 * --register=no -b --volatile=overlay` (this host has no system bus; the
 * overlay keeps the cached root file system unchanged and goes away at power
 * off). The machine shares the host's network namespace, so it reaches the
 * stand-ins on loopback. Resolves once systemd reports `running` or `degraded`.
 */
export async function bootMachine(options: BootOptions, timeoutMs = 90_000): Promise<Machine> {
  const args = ['--keep-unit', '--register=no', '--quiet', '-b', '-D', options.rootfs, '--volatile=overlay', `--machine=${options.name}`];
  for (const [host, inside] of Object.entries(options.bindReadOnly)) args.push(`--bind-ro=${host}:${inside}`);
  for (const [host, inside] of Object.entries(options.bind)) args.push(`--bind=${host}:${inside}`);
  const nspawn: ChildProcess = spawn('systemd-nspawn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    nspawn.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  for (const stream of [nspawn.stdout, nspawn.stderr]) stream?.on('data', (chunk: Buffer) => options.onOutput?.(chunk.toString()));

  const exec = (command: readonly string[], opts: { input?: string; timeoutMs?: number } = {}) =>
    new Promise<ExecResult>((resolve) => {
      const child = execFile(
        'nsenter',
        ['-t', String(leader), '-a', '--', ...command],
        {
          timeout: opts.timeoutMs ?? 120_000,
          maxBuffer: 64 * 1024 * 1024,
          env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: '/root' },
        },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : 255) : 0;
          resolve({ code, stdout: String(stdout), stderr: String(stderr) });
        },
      );
      // A command that exits without reading its input must not fail the test with EPIPE.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(opts.input ?? '');
    });
  let leader = 0;
  const deadline = Date.now() + timeoutMs;
  const stop = async () => {
    nspawn.kill('SIGKILL');
    await exit;
  };
  while (Date.now() < deadline && !exited) {
    if (leader === 0) leader = findLeader(nspawn.pid as number) ?? 0;
    if (leader !== 0) {
      const state = (await exec(['systemctl', 'is-system-running'], { timeoutMs: 10_000 })).stdout.trim();
      if (state === 'running' || state === 'degraded') break;
    }
    await sleep(500);
  }
  if (exited || Date.now() >= deadline) {
    await stop();
    throw new Error(`the machine did not reach a running systemd within ${timeoutMs / 1000} s`);
  }

  return {
    name: options.name,
    leader,
    exec,
    async sh(script, opts) {
      const result = await exec(['/bin/sh', '-ec', script], opts);
      if (result.code !== 0) {
        throw new Error(`in the machine: ${script}\nexit ${result.code}\n${result.stdout}${result.stderr}`);
      }
      return result.stdout;
    },
    async powerOff(timeout = 60_000) {
      if (exited) return;
      await exec(['systemctl', 'poweroff', '--no-block'], { timeoutMs: 10_000 });
      const timer = setTimeout(() => nspawn.kill('SIGKILL'), timeout);
      await exit;
      clearTimeout(timer);
    },
  };
}
