import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The value below which `p` percent of `values` lie (nearest rank; p in 0..100). NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? NaN;
}

/** The median of `values` (mean of the middle two for an even count). NaN for no values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  return Number.isInteger(middle) ? ((sorted[middle - 1] ?? NaN) + (sorted[middle] ?? NaN)) / 2 : (sorted[Math.floor(middle)] ?? NaN);
}

/** Seconds elapsed since `start` (a `process.hrtime.bigint()`). */
export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** One field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`); NaN when the process is gone. */
export async function procStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
}

/** What {@link timeCommand} measured. */
export interface CommandRun {
  /** Wall time in seconds. */
  seconds: number;
  /** Peak resident set size of the command in KiB (GNU time's `%M`). */
  peakRssKiB: number;
  stdout: string;
}

/** Runs a command under GNU `/usr/bin/time` and returns its wall time, peak RSS and output; rejects when it fails. */
export async function timeCommand(file: string, args: readonly string[]): Promise<CommandRun> {
  const dir = await mkdtemp(join(tmpdir(), 'spark-time-'));
  try {
    const out = join(dir, 'time');
    const start = process.hrtime.bigint();
    const { stdout } = await run('/usr/bin/time', ['-f', '%M', '-o', out, file, ...args], { maxBuffer: 64 * 1024 * 1024 });
    const seconds = secondsSince(start);
    return { seconds, peakRssKiB: Number((await readFile(out, 'utf8')).trim().split('\n').at(-1)), stdout };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The machine a benchmark ran on, for its report: CPU model, cores, RAM, Node version, date. */
export async function machineDescription(): Promise<string> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
  const meminfo = await readFile('/proc/meminfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown CPU';
  const cores = cpuinfo.match(/^processor\s*:/gm)?.length ?? 0;
  const ramGiB = Number(/^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1] ?? 0) / 1024 / 1024;
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  return `${model}, ${cores} cores, ${ramGiB.toFixed(1)} GiB RAM, Node ${process.version}, load ${load}, ${new Date().toISOString()}`;
}
