/*
 * Log relay: a command printing 200 MB of build-log lines, run the way a
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
import { machineDescription, median, secondsSince } from '@spark/testing';
import { createWarningCollector } from '../src/compiler-warnings.js';
import { openJobLog } from '../src/job-log.js';
import { MISSING_IMAGE_PREFIX, UNMET_DEPENDENCIES } from '../src/package-build.js';
import { runLogged } from '../src/run-logged.js';

const BYTES = 200_000_000;
const RUNS = 5;
const MB = 1_000_000;
// Ten lines of a C build, one warning among them, about 100 bytes a line.
const BLOCK = [
  'x86_64-linux-gnu-gcc -g -O2 -Wall -Wextra -fstack-protector-strong -c src/module.c -o build/module.o',
  'x86_64-linux-gnu-gcc -g -O2 -Wall -Wextra -fstack-protector-strong -c src/parser.c -o build/parser.o',
  'src/parser.c: In function ‘parse_header’:',
  'src/parser.c:42:13: warning: unused variable ‘length’ [-Wunused-variable]',
  'x86_64-linux-gnu-gcc -g -O2 -Wall -Wextra -fstack-protector-strong -c src/output.c -o build/output.o',
  'x86_64-linux-gnu-gcc -g -O2 -Wall -Wextra -fstack-protector-strong -c src/config.c -o build/config.o',
  'make[2]: Leaving directory /build/reproducible-path/hello-1.0/src; entering the next one for the tests',
  '   dh_auto_test -a -O--buildsystem=autoconf -- VERBOSE=1 TESTSUITEFLAGS=-j2 check-TESTS RECHECK_LOGS=',
  'PASS: tests/test-parser-header-lengths-and-continuation-lines-with-folded-whitespace-and-comments.sh',
  'x86_64-linux-gnu-gcc -g -O2 -Wall -Wextra -fstack-protector-strong -c src/main.c -o build/main.o',
].join('\n');
const SCRIPT = 'yes "$1" | head -c "$2"';

const tmp = await mkdtemp(join(tmpdir(), 'spark-builder-bench-'));

/** The command's stdout and stderr to `path` (no builder involved). */
async function plain(path: string): Promise<number> {
  const file = await open(path, 'w');
  try {
    const start = process.hrtime.bigint();
    const child = spawn('sh', ['-c', SCRIPT, 'sh', BLOCK, String(BYTES)], { stdio: ['ignore', file.fd, file.fd] });
    const [code] = (await once(child, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`the generator exited with ${code}`);
    return secondsSince(start);
  } finally {
    await file.close();
  }
}

/** The same command through the builder's log relay into a job log. */
async function throughBuilder(): Promise<number> {
  const path = join(tmp, 'job.log');
  const start = process.hrtime.bigint();
  const log = await openJobLog(path);
  const seen = { missingImage: false, unmetDependencies: false };
  const warnings = createWarningCollector();
  log.onLine((line) => {
    if (line.startsWith(MISSING_IMAGE_PREFIX)) seen.missingImage = true;
    if (line.includes(UNMET_DEPENDENCIES)) seen.unmetDependencies = true;
    warnings.line(line);
  });
  const outcome = await runLogged({ file: 'sh', args: ['-c', SCRIPT, 'sh', BLOCK, String(BYTES)] }, log, {
    idleOutputTimeoutMs: 60_000,
    killGraceMs: 1_000,
    signal: new AbortController().signal,
  });
  await log.close();
  const seconds = secondsSince(start);
  if (outcome.exitCode !== 0) throw new Error(`the generator exited with ${outcome.exitCode}`);
  const size = (await stat(path)).size;
  if (size < BYTES || warnings.warnings.length === 0)
    throw new Error(`the job log is short (${size} bytes, ${warnings.warnings.length} warnings)`);
  return seconds;
}

try {
  process.stdout.write(
    `log relay: ${BYTES / MB} MB of build output, ${RUNS} runs after a warm-up, medians; ${await machineDescription()}\n`,
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
    `${label}${median(runs).toFixed(2)} s (${(BYTES / MB / median(runs)).toFixed(0)} MB/s), ×${(median(runs) / median(devNull)).toFixed(1)} of /dev/null; runs ${runs.map((s) => s.toFixed(2)).join(' ')}`;
  process.stdout.write(
    [
      line('through the builder (job log, line listeners): ', builder),
      line('same command > /dev/null:                       ', devNull),
      line('same command > file:                            ', toFile),
      '',
    ].join('\n'),
  );
} finally {
  await rm(tmp, { recursive: true, force: true });
}
