/*
 * Chain benchmarks: the whole worker on this machine (tools/src/chain) with
 * the no-op runner, which copies results prebuilt once with the host runner.
 * Run: npm run bench (or, in tools/, npm run bench).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { machineDescription, median } from '@spark/testing';
import { benchIdleWorker } from './idle-worker.js';
import { benchIdleRss } from './idle-rss.js';
import { benchJobOverhead, benchThroughput } from './job-overhead.js';
import { prebuild } from './chain-jobs.js';

const PACKAGES = 12;
const PICKUPS = 25;
const JOBS = 50;

const dir = await mkdtemp(join(tmpdir(), 'spark-chain-bench-'));
try {
  process.stdout.write(`chain benchmarks; ${await machineDescription()}\n`);
  const prebuilt = await prebuild(dir, PACKAGES);
  process.env['SPARK_PREBUILT_DIR'] = prebuilt.dir;
  process.stdout.write(
    `prebuilt ${PACKAGES} hello packages with the host runner (dpkg-buildpackage): median ${median(prebuilt.buildSeconds).toFixed(2)} s each\n`,
  );
  for (const line of await benchIdleWorker(prebuilt, PICKUPS)) process.stdout.write(`${line}\n`);
  for (const line of await benchIdleRss(prebuilt)) process.stdout.write(`${line}\n`);
  for (const line of await benchJobOverhead(prebuilt, JOBS)) process.stdout.write(`${line}\n`);
  for (const line of await benchThroughput(prebuilt, [1, 2, 4], 3)) process.stdout.write(`${line}\n`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
