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
import { benchStart } from './start-time.js';
import { buildBundles, environmentAsUnits } from './bundles.js';
import { benchJobOverhead, benchThroughput } from './job-overhead.js';
import { prebuild } from './chain-jobs.js';

const PACKAGES = 12;
const PICKUPS = 25;
const JOBS = 50;
const STARTS = 5;

const dir = await mkdtemp(join(tmpdir(), 'spark-chain-bench-'));
// What operators run (the Debian package's bundles) next to deploy/install.sh's dist/ builds.
const bundles = await buildBundles();
const unitsEnvironment = environmentAsUnits();
if (unitsEnvironment) process.stdout.write(`${unitsEnvironment}\n`);
try {
  process.stdout.write(`chain benchmarks; ${await machineDescription()}\n`);
  const prebuilt = await prebuild(dir, PACKAGES);
  process.env['SPARK_PREBUILT_DIR'] = prebuilt.dir;
  process.stdout.write(
    `prebuilt ${PACKAGES} hello packages with the host runner (dpkg-buildpackage): median ${median(prebuilt.buildSeconds).toFixed(2)} s each\n`,
  );
  for (const line of await benchIdleWorker(prebuilt, PICKUPS)) process.stdout.write(`${line}\n`);
  const builds = [
    { label: 'bundles', build: { kind: 'bundle', dir: bundles.dir } as const },
    { label: 'dist/', build: { kind: 'dist' } as const },
  ];
  for (const line of await benchStart(builds, STARTS)) process.stdout.write(`${line}\n`);
  for (const line of await benchIdleRss(prebuilt, [{ label: 'bundles', bundles: bundles.dir }, { label: 'dist/' }])) {
    process.stdout.write(`${line}\n`);
  }
  for (const line of await benchJobOverhead(prebuilt, JOBS)) process.stdout.write(`${line}\n`);
  for (const line of await benchThroughput(prebuilt, [1, 2, 4], 3)) process.stdout.write(`${line}\n`);
} finally {
  await bundles.close();
  await rm(dir, { recursive: true, force: true });
}
