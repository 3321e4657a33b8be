/*
 * Log relay: a command printing 200 MB of pseudo-terminal build output
 * (./pty-output.ts: CRLF, colours, OSC 8 links, coloured GCC warnings), run the way a
 * package build runs debspawn (runLogged into the job log, with the same line
 * listeners: missing image, unmet dependencies, compiler warnings), against
 * the same command writing to /dev/null, and to a plain file. Warm-up, then
 * RUNS of each, interleaved; medians. Run: npm run bench.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeFlags } from '@spark/config';
import { BUILD_REFUSED } from '@spark/protocol/constants';
import { machineDescription, median, secondsSince } from '@spark/testing';
import { createWarningCollector, MAX_WARNINGS, WARNING_NEEDLES } from '../src/compiler-warnings.js';
import { openJobLog } from '../src/job-log.js';
import { MISSING_IMAGE_PREFIX, UNMET_DEPENDENCIES } from '../src/package-build.js';
import { runLogged } from '../src/run-logged.js';
import { ptyBlock } from './pty-output.js';

const BYTES = 200_000_000;
const RUNS = 5;
const MB = 1_000_000;
// Pseudo-terminal build output (CRLF, colours, OSC 8 links, coloured GCC warnings, bare-CR progress lines), repeated by `yes`.
const BLOCK = ptyBlock(32 * 1024);
const SCRIPT = 'yes "$1" | head -c "$2"';

/** The V8 flags this bench runs under, next to the builder's production flags (package.json's bench script gives them). */
function flagsNote(): string {
  const flags = process.execArgv.filter((arg) => arg.startsWith('--') && !arg.startsWith('--conditions') && !arg.startsWith('--import'));
  const production = nodeFlags('builder');
  const same = flags.length === production.length && production.every((flag) => flags.includes(flag));
  return `node flags [${flags.join(' ')}]${same ? " (the builder's production flags)" : `, not the builder's production flags [${production.join(' ')}]`}`;
}

const tmp = await mkdtemp(join(tmpdir(), 'spark-builder-bench-'));

/** The command's stdout and stderr to `path` (no builder involved). */
async function plain(path: string): Promise<number> {
  const file = await open(path, 'w');
  try {
    const start = process.hrtime.bigint();
    const child = spawn('sh', ['-c', SCRIPT, 'sh', BLOCK.text, String(BYTES)], { stdio: ['ignore', file.fd, file.fd] });
    const [code] = (await once(child, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`the generator exited with ${code}`);
    return secondsSince(start);
  } finally {
    await file.close();
  }
}

/** CPU seconds (user + system, all of the builder's threads) of each relay run: less load-dependent than wall time. */
const builderCpu: number[] = [];

/** The same command through the builder's log relay into a job log. */
async function throughBuilder(): Promise<number> {
  const path = join(tmp, 'job.log');
  const start = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();
  const log = await openJobLog(path);
  const seen = { missingImage: false, unmetDependencies: false };
  const warnings = createWarningCollector();
  // As runPackageBuild watches: the warnings' listener is removed once the list is full.
  log.onLine([MISSING_IMAGE_PREFIX, UNMET_DEPENDENCIES, BUILD_REFUSED], (line) => {
    if (line.startsWith(MISSING_IMAGE_PREFIX)) seen.missingImage = true;
    if (line.includes(UNMET_DEPENDENCIES)) seen.unmetDependencies = true;
  });
  const stopWarnings = log.onLine(WARNING_NEEDLES, (line) => {
    warnings.line(line);
    if (warnings.full) stopWarnings();
  });
  const outcome = await runLogged({ file: 'sh', args: ['-c', SCRIPT, 'sh', BLOCK.text, String(BYTES)] }, log, {
    idleOutputTimeoutMs: 60_000,
    killGraceMs: 1_000,
    signal: new AbortController().signal,
  });
  await log.close();
  const seconds = secondsSince(start);
  const cpu = process.cpuUsage(cpuBefore);
  builderCpu.push((cpu.user + cpu.system) / 1e6);
  if (outcome.exitCode !== 0) throw new Error(`the generator exited with ${outcome.exitCode}`);
  const size = (await stat(path)).size;
  // Every block holds warnings; more than the collector keeps in 200 MB.
  const expected = Math.min(MAX_WARNINGS, Math.floor(BYTES / (Buffer.byteLength(BLOCK.text) + 1)) * BLOCK.warnings);
  if (size < BYTES || warnings.warnings.length !== expected || seen.missingImage || seen.unmetDependencies)
    throw new Error(
      `the relay missed output (${size} bytes, ${warnings.warnings.length} of ${expected} warnings, ${JSON.stringify(seen)})`,
    );
  return seconds;
}

try {
  process.stdout.write(
    `log relay: ${BYTES / MB} MB of pseudo-terminal build output (CRLF, colours, OSC 8 links), ${RUNS} runs after a warm-up, medians; ${flagsNote()}; ${await machineDescription()}\n`,
  );
  await throughBuilder();
  await plain('/dev/null');
  const builder: number[] = [];
  const devNull: number[] = [];
  const toFile: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    builder.push(await throughBuilder());
    devNull.push(await plain('/dev/null'));
    toFile.push(await plain(join(tmp, 'plain.log')));
  }
  const line = (label: string, runs: number[]) =>
    `${label}${median(runs).toFixed(2)} s (${(BYTES / MB / median(runs)).toFixed(0)} MB/s), ×${(median(runs) / median(devNull)).toFixed(1)} of /dev/null, ×${(median(runs) / median(toFile)).toFixed(2)} of a file; runs ${runs.map((s) => s.toFixed(2)).join(' ')}`;
  process.stdout.write(
    [
      line('through the builder (job log, line listeners): ', builder),
      `  … its CPU time: ${median(builderCpu.slice(1)).toFixed(2)} s (${(BYTES / MB / median(builderCpu.slice(1))).toFixed(0)} MB per CPU second)`,
      line('same command > /dev/null:                       ', devNull),
      line('same command > file:                            ', toFile),
      '',
    ].join('\n'),
  );
} finally {
  await rm(tmp, { recursive: true, force: true });
}
