import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { pino } from 'pino';
import {
  builderControlChannel,
  jobLogFile,
  jobRecordKey,
  jobWorkspaceDir,
  parseJobId,
  REPORT_QUEUES,
  reportJobId,
  reportPayloadSchema,
  signPayloadSchema,
  stageJobId,
  UUID,
  type BuilderControlMessage,
  type NewJobRecord,
} from '@spark/protocol';
import { connectRedis, type Redis } from '@spark/service';
import { randomQueuePrefix, runSparkCommand, startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import type { Builder } from '../src/builder.js';
import { createBuilderOnRedis } from '../src/builder-redis.js';
import { redisServerPid } from './faults.js';
import { BUILD_WAIT, testConfig, testConfigToml } from './fixtures.js';
import { openStandIn, R, type StandIn } from './stand-in-debspawn.js';

/**
 * How long a `spark` command may run before the test kills it: only a guard against one left running. Node with
 * tsx starting the CLI from source took more than the default 30 s at nice 19 behind two busy loops, and was killed.
 */
const SPARK_COMMAND_GUARD = { timeoutMs: 150_000 };

/*
 * The builder on BullMQ and a real redis-server (createBuilderOnRedis), with
 * the stand-in debspawn of limits.test.ts, for what crosses processes: an
 * operator's `spark cancel` and `spark logs -f` (the CLI in a process of its
 * own, through the control channel, the job records and the report queue),
 * and a job lock lost while Redis is stopped (SIGSTOP), the job then handed
 * out again by BullMQ. The builder's own rules are in limits.test.ts, on
 * in-memory queues.
 */
describe('builder on Redis: operator commands and a lost job lock', { timeout: 600_000 }, () => {
  let redis: RedisServer;
  let connection: Redis;
  let standIn: StandIn;
  let root: string;
  let buildQueue: Queue;
  let signQueue: Queue;
  let reportQueue: Queue;
  const builders: Builder[] = [];
  const prefix = randomQueuePrefix();

  const startBuilder = async (id: string, builderToml: string) => {
    const config = testConfig({
      workspaceRoot: join(root, 'ws'),
      redisUrl: redis.url,
      prefix,
      builder: `Debspawn = "${standIn.debspawn}"\n${builderToml}`,
    });
    const builder = createBuilderOnRedis(config, pino({ level: 'silent' }), { id, killGraceMs: 500 });
    builders.push(builder);
    await builder.start();
    return { builder, config };
  };
  const closeBuilders = async () => {
    for (const builder of builders.splice(0)) await builder.close();
  };
  const addJob = async (uuid: string, suite: string, overrides: Record<string, unknown> = {}, round = R) => {
    if (UUID.test(uuid)) {
      // As the connector records each hand-out: `spark cancel <uuid>` finds the round through it.
      const record: NewJobRecord = {
        uuid,
        round,
        kind: 'package-build',
        architecture: 'amd64',
        repo: 'master',
        package: 'limited',
        version: '1.0',
        suite,
        receivedAt: 0,
      };
      await connection.set(jobRecordKey(prefix, uuid), JSON.stringify(record));
    }
    const jobId = standIn.buildJobId(uuid, round);
    await buildQueue.add('build', standIn.buildJob(uuid, suite, overrides, round), { jobId });
    return jobId;
  };
  const finalReport = (uuid: string) =>
    waitFor(
      `the final report of ${uuid}`,
      async () => {
        const job = await reportQueue.getJob(reportJobId({ uuid, round: R }, { kind: 'final' }));
        return job ? reportPayloadSchema.parse(job.data) : null;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  const manifestOf = (uuid: string) =>
    waitFor(
      `the sign job of ${uuid}`,
      async () => {
        const job = await signQueue.getJob(stageJobId({ uuid, round: R }, 'sign'));
        return job ? signPayloadSchema.parse(job.data).manifest : null;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
  const logOf = (uuid: string) => standIn.logOf(uuid);
  const logShows = (uuid: string, pattern: RegExp) => standIn.logShows(uuid, pattern);
  const childrenAlive = () => standIn.childrenAlive();

  before(async () => {
    redis = await startRedisServer();
    connection = connectRedis(redis.url, 'worker');
    standIn = await openStandIn('on-redis');
    root = standIn.root;
    buildQueue = new Queue('build', { connection, prefix });
    signQueue = new Queue('sign', { connection, prefix });
    reportQueue = new Queue(REPORT_QUEUES.builder, { connection, prefix });
    await startBuilder('limits-a', 'IdleOutputTimeout = 60');
  });

  after(async () => {
    for (const builder of builders) await builder.close();
    await buildQueue?.close();
    await signQueue?.close();
    await reportQueue?.close();
    await connection?.quit();
    await standIn?.close();
    await redis?.stop();
  });

  it('spark cancel stops a running job and rejects it back; spark logs -f follows it to the end', async () => {
    const uuid = randomUUID();
    await addJob(uuid, 'chatty');
    await logShows(uuid, /still building/);
    const configFile = join(root, 'spark.toml');
    await writeFile(configFile, testConfigToml({ workspaceRoot: join(root, 'ws'), redisUrl: redis.url, prefix }));
    const following = runSparkCommand(['logs', '-f', uuid, '--config', configFile], SPARK_COMMAND_GUARD);
    const cancel = await runSparkCommand(['cancel', uuid, '--reason', 'requested by test', '--config', configFile], SPARK_COMMAND_GUARD);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(cancel.stdout, `job ${uuid} rejected back to Lighthouse: cancelled by operator: requested by test\n`);
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, /still building/);
    assert.match(followed.stdout, /job rejected back to Lighthouse: cancelled by operator: requested by test\n$/);
    const again = await runSparkCommand(['cancel', uuid, '--config', configFile], SPARK_COMMAND_GUARD);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`job ${uuid} is not running on a builder`));
    await connection.publish(builderControlChannel(prefix), '{"action":"cancel","uuid":"not-a-uuid"}');
    const report = await finalReport(uuid);
    assert.equal(report.kind, 'rejected');
    assert.equal(report.kind === 'rejected' ? report.reason : '', 'cancelled by operator: requested by test');
    assert.match(await logOf(uuid), /job rejected back to Lighthouse: cancelled by operator/);
    assert.equal(await signQueue.getJob(stageJobId({ uuid, round: R }, 'sign')), undefined);
    await waitFor('the stand-in build tree to be gone', async () => (await childrenAlive()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });

  it('spark logs -f goes on with the next round when the job is handed out to this worker again', async () => {
    const uuid = randomUUID();
    const next = String(Number(R) + 60_000);
    const configFile = join(root, 'spark.toml');
    await writeFile(configFile, testConfigToml({ workspaceRoot: join(root, 'ws'), redisUrl: redis.url, prefix }));
    await addJob(uuid, 'chatty');
    await logShows(uuid, /still building/);
    let followerStarted: (started: true) => void = () => undefined;
    const started = new Promise<true>((resolve) => (followerStarted = resolve));
    const following = runSparkCommand(['logs', '-f', uuid, '--config', configFile], {
      ...SPARK_COMMAND_GUARD,
      onStdout: (stdout) => stdout.includes('still building') && followerStarted(true),
    });
    await started;
    // Lighthouse hands the job out again while its first round still builds: the new round waits in the queue.
    await buildQueue.pause();
    await addJob(uuid, 'chatty', {}, next);
    const stop: BuilderControlMessage = { action: 'cancel', uuid, reason: 'first round' };
    await connection.publish(builderControlChannel(prefix), JSON.stringify(stop));
    await finalReport(uuid);
    await buildQueue.resume();
    const nextLog = jobLogFile(join(root, 'ws', 'logs'), { uuid, round: next });
    await waitFor(
      'the next round to build',
      async () => /still building/.test(await readFile(nextLog, 'utf8').catch(() => '')),
      BUILD_WAIT,
    );
    const cancel = await runSparkCommand(['cancel', uuid, '--reason', 'second round', '--config', configFile], SPARK_COMMAND_GUARD);
    assert.equal(cancel.code, 0, cancel.stderr);
    const followed = await following;
    assert.equal(followed.code, 0, followed.stderr);
    assert.equal(followed.stderr, `spark logs: job ${uuid} was handed out to this worker again; following round ${next}\n`);
    assert.match(followed.stdout, /cancelled by operator: first round\n[^]*still building[^]*cancelled by operator: second round\n$/);
    await waitFor('the stand-in build tree to be gone', async () => (await childrenAlive()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });

  const statusReportsOf = async (uuid: string) =>
    (await reportQueue.getJobs(['waiting']))
      .map((job) => ({ id: parseJobId(job.id), excerpt: (job.data as { logExcerpt: string }).logExcerpt }))
      .flatMap(({ id, excerpt }) =>
        id?.uuid === uuid && id.type === 'report' && id.slot.kind === 'status' ? [{ seq: id.slot.seq, excerpt }] : [],
      )
      .sort((a, b) => a.seq - b.seq);
  const runDirsOf = async (uuid: string, workspaceRoot = join(root, 'ws')) =>
    (await readdir(jobWorkspaceDir(join(workspaceRoot, 'workspaces'), { uuid, round: R })).catch(() => [] as string[])).filter((name) =>
      name.startsWith('run-'),
    );

  it('a builder that loses its job lock to a Redis pause stops the build and reports nothing; the next run starts clean and goes on numbering', async () => {
    await closeBuilders();
    await startBuilder('limits-f', 'IdleOutputTimeout = 60');
    await startBuilder('limits-g', 'IdleOutputTimeout = 60');
    const uuid = randomUUID();
    await addJob(uuid, 'lockloss');
    await logShows(uuid, /still building/);
    await waitFor('a status excerpt of the first run', async () => (await statusReportsOf(uuid)).length > 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
    const [firstRunDir] = await runDirsOf(uuid);
    assert.ok(firstRunDir);
    // Longer than the 10 s lock: once Redis runs again the lock has expired and the job is handed out anew.
    const redisPid = await redisServerPid(redis.port);
    process.kill(redisPid, 'SIGSTOP');
    await new Promise((resolve) => setTimeout(resolve, 13_000));
    process.kill(redisPid, 'SIGCONT');

    const manifest = await manifestOf(uuid);
    assert.equal(manifest.result, 'failure');
    const log = await logOf(uuid);
    assert.match(log, /second run in \/.*\/run-[0-9a-f-]+/);
    assert.doesNotMatch(log, /still building|first run/, 'the log is the second run only');
    assert.ok(!log.includes(firstRunDir), 'the second run builds in a directory of its own');
    // The run removes its directory just after the hand-over the manifest was read from.
    await waitFor('the run directories removed', async () => (await runDirsOf(uuid)).length === 0, BUILD_WAIT);
    assert.equal(
      await reportQueue.getJob(reportJobId({ uuid, round: R }, { kind: 'final' })),
      undefined,
      'the first run reported nothing final (the job goes on to the signer)',
    );
    const statuses = await statusReportsOf(uuid);
    const seqs = statuses.map((status) => status.seq);
    const second = statuses.filter((status) => /second run/.test(status.excerpt));
    assert.equal(second.length, 1, `statuses: ${JSON.stringify(seqs)}`);
    const firstRunSeqs = statuses.filter((status) => /still building/.test(status.excerpt)).map((status) => status.seq);
    assert.ok(firstRunSeqs.length > 0);
    assert.ok(
      (second[0]?.seq ?? 0) > Math.max(...firstRunSeqs),
      `second run's excerpt is #${second[0]?.seq}, after ${firstRunSeqs.join(',')}`,
    );
    await waitFor("the first run's tree to be gone", async () => (await childrenAlive()).length === 0, {
      timeoutMs: 10_000,
      intervalMs: 200,
    });
  });
});
