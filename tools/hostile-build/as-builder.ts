/*
 * The compromised builder of npm run test:hostile: run.ts starts it as
 * spark-builder (setpriv), with the builder's Redis password file and its
 * filesystem rights, nothing more. Prints one JSON line per thing tried.
 *
 *   as-builder.ts rounds COUNT          stands in for the builder (the suite stops the real one): takes COUNT
 *                                       jobs from the build queue and hands the signer, for each, the round its
 *                                       package name asks for (hostile-content.ts), as a builder would
 *   as-builder.ts swap UUID ROUND FILE link TARGET | bytes
 *                                       replaces an artifact of a signed round: with a link to TARGET, or in
 *                                       place with other bytes of the same size
 *   as-builder.ts listing               the Redis commands that list keys and clients
 *   as-builder.ts dashboard URL PID     the read-write dashboard's API without its token; the dashboard
 *                                       process's environment and memory
 *   as-builder.ts flood COUNT           COUNT bogus reports into its own report queue (addBulk)
 *
 * Each takes `--config FILE` (default /etc/laniakea/spark.toml).
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { DEFAULT_CONFIG_FILE, loadConfig, type SparkConfig } from '@spark/config';
import { jobArtifactsDir, QueueName, REPORT_QUEUES, stageJobId } from '@spark/protocol';
import { sendReport } from '@spark/service';
import { attempt, builderRedis, listingCommands, out, takeBuildJobs, tryCommands } from '../src/hostile/compromised-builder.js';
import { debName, floodReport, ROUND_SCENARIOS, writeHostileRound, type RoundScenario } from './hostile-content.js';

async function rounds(config: SparkConfig, count: number): Promise<void> {
  const redis = await builderRedis(config);
  const signQueue = new Queue(QueueName.sign, { connection: redis, prefix: config.queuePrefix });
  const reportQueue = new Queue(REPORT_QUEUES.builder, { connection: redis, prefix: config.queuePrefix });
  for (const queue of [signQueue, reportQueue]) queue.on('error', () => undefined);
  try {
    await takeBuildJobs(config, redis, count, async (job, round) => {
      const scenario = job.data.package_name as RoundScenario;
      if (!ROUND_SCENARIOS.includes(scenario)) throw new Error(`no scenario for ${job.data.package_name}`);
      await sendReport(reportQueue, { kind: 'accepted', ...round, at: Date.now() });
      const manifest = await writeHostileRound(config.workspacesDir, job, round, scenario);
      await signQueue.add('sign', { manifest }, { jobId: stageJobId(round, 'sign') });
      out({ scenario, ...round, deb: debName(job) });
    });
  } finally {
    await Promise.all([signQueue.close(), reportQueue.close()]);
    await redis.quit();
  }
}

async function swap(config: SparkConfig, [uuid = '', round = '', file = '', how, target]: string[]): Promise<void> {
  const path = join(jobArtifactsDir(config.workspacesDir, { uuid, round }), file);
  if (how === 'link' && target) {
    out({ ...(await attempt(`replace ${file} with a link to ${target}`, () => rm(path).then(() => symlink(target, path)))) });
  } else if (how === 'bytes') {
    const replace = async () => {
      const handle = await open(path, 'r+');
      try {
        const { size } = await handle.stat();
        await handle.write(Buffer.alloc(size, 'X'), 0, size, 0);
      } finally {
        await handle.close();
      }
    };
    out({ ...(await attempt(`overwrite ${file} in place with other bytes of its size`, replace)) });
  } else {
    throw new Error('swap UUID ROUND FILE link TARGET | bytes');
  }
}

async function listing(config: SparkConfig): Promise<void> {
  const redis = await builderRedis(config);
  try {
    for (const line of await tryCommands(redis, listingCommands(config.queuePrefix))) out({ ...line });
  } finally {
    await redis.quit();
  }
}

/** Each write the dashboard's API offers, and the read of every queue's jobs, with every way of showing a token but the token. */
async function dashboard(url: string, pid: string): Promise<void> {
  const wrong = randomBytes(24).toString('base64url');
  const shown: [string, Record<string, string>, string][] = [
    ['no token', {}, ''],
    ['a wrong Bearer token', { authorization: `Bearer ${wrong}` }, ''],
    ['a guessed cookie', { cookie: `spark_dashboard_token=${wrong}` }, ''],
    ['a wrong ?token=', {}, `?token=${wrong}`],
  ];
  const calls: [string, string, unknown][] = [
    ['GET', 'api/queues', undefined],
    ['POST', `api/queues/${QueueName.build}/add`, { name: 'forged', data: { forged: true } }],
    ['PUT', `api/queues/${QueueName.sign}/pause`, undefined],
    ['PUT', `api/queues/${QueueName.upload}/retry/failed`, undefined],
    ['PUT', `api/queues/${REPORT_QUEUES.uploader}/clean/completed`, undefined],
  ];
  for (const [method, path, body] of calls) {
    for (const [how, headers, query] of shown) {
      const call = async () => {
        const response = await fetch(new URL(`${path}${query}`, url), {
          method,
          headers: { 'content-type': 'application/json', ...headers },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        const text = (await response.text()).trim().slice(0, 200);
        if (!response.ok) throw new Error(`${response.status} ${text}`);
        return `${response.status} ${text}`;
      };
      out({ ...(await attempt(`${method} /${path} with ${how}`, call)) });
    }
  }
  for (const what of ['environ', 'mem']) {
    out({ ...(await attempt(`read the dashboard's /proc/${pid}/${what}`, () => readFile(`/proc/${pid}/${what}`, 'latin1'))) });
  }
}

async function flood(config: SparkConfig, count: number): Promise<void> {
  const redis = await builderRedis(config);
  const queue = new Queue(REPORT_QUEUES.builder, { connection: redis, prefix: config.queuePrefix });
  queue.on('error', () => undefined);
  try {
    const BATCH = 5_000;
    for (let start = 0; start < count; start += BATCH) {
      await queue.addBulk(Array.from({ length: Math.min(BATCH, count - start) }, (_, i) => floodReport(start + i)));
    }
    out({ queued: count });
  } finally {
    await queue.close();
    await redis.quit();
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({ options: { config: { type: 'string' } }, allowPositionals: true });
  const config = loadConfig(values.config ?? DEFAULT_CONFIG_FILE).config;
  const [command, ...args] = positionals;
  const count = Number(args[0]);
  if (command === 'rounds' && count > 0) await rounds(config, count);
  else if (command === 'swap') await swap(config, args);
  else if (command === 'listing') await listing(config);
  else if (command === 'dashboard' && args.length === 2) await dashboard(args[0] ?? '', args[1] ?? '');
  else if (command === 'flood' && count > 0) await flood(config, count);
  else {
    process.stderr.write(
      'usage: as-builder.ts rounds COUNT | swap UUID ROUND FILE link TARGET|bytes | listing | dashboard URL PID | flood COUNT [--config FILE]\n',
    );
    return 64;
  }
  return 0;
}

process.exit(await main());
