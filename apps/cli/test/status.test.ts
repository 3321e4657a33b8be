import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { blockedKindsKey, lighthouseStatusKey, stageJobId, type BlockedKind } from '@spark/protocol';
import { connectRedis, redisReady, writeBuilderHeartbeat, type Redis } from '@spark/service';
import { builderHeartbeat, randomQueuePrefix, startRedisServer, type RedisServer } from '@spark/testing';
import { runSpark } from './run-spark.js';

const uuidA = '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1';
const uuidB = '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f';

describe('spark status', () => {
  let server: RedisServer;
  let redis: Redis;
  const prefix = randomQueuePrefix();
  before(async () => {
    server = await startRedisServer();
    redis = connectRedis(server.url, 'producer');
    await redisReady(redis);
  });
  after(async () => {
    redis.disconnect();
    await server.stop();
  });

  it('shows a job moving through the stages, live builders and the Lighthouse link', async () => {
    const build = new Queue('build', { connection: redis, prefix });
    const sign = new Queue('sign', { connection: redis, prefix });
    await build.add('package-build', { x: 1 }, { jobId: stageJobId({ uuid: uuidA, round: '1' }, 'build') });
    await writeBuilderHeartbeat(redis, prefix, builderHeartbeat({ id: 'hydrogen@1', slots: 2, busy: 1 }));
    const now = Date.now();
    await redis.set(
      lighthouseStatusKey(prefix),
      JSON.stringify({
        server: 'tcp://lh:5570',
        lastContactAt: now - 5_000,
        outageSince: now - 4_000,
        lastError: 'no reply within 15000 ms',
      }),
    );

    let result = await runSpark(['status', '--redis', server.url, '--prefix', prefix, '--json']);
    // The outage makes it unhealthy (status-health.test.ts has the exit codes).
    assert.equal(result.code, 5, result.stderr);
    let [host] = JSON.parse(result.stdout) as {
      queues: Record<string, { waiting: number }>;
      jobs: { uuid: string; stage: string; state: string }[];
      builders: { id: string; slots: number }[];
      lighthouse: { outageSince: number };
    }[];
    assert.ok(host);
    assert.equal(host.queues['build']?.waiting, 1);
    assert.deepEqual(
      host.jobs.map((j) => [j.uuid, j.stage, j.state]),
      [[uuidA, 'build', 'waiting']],
    );
    assert.deepEqual(
      host.builders.map((b) => [b.id, b.slots]),
      [['hydrogen@1', 2]],
    );
    assert.equal(host.lighthouse.outageSince, now - 4_000);

    // The builder hands the job on: it is now in sign.
    await build.remove(stageJobId({ uuid: uuidA, round: '1' }, 'build'));
    await sign.add('sign', { x: 1 }, { jobId: stageJobId({ uuid: uuidA, round: '1' }, 'sign') });
    await sign.add('sign', { x: 2 }, { jobId: stageJobId({ uuid: uuidB, round: '1' }, 'sign'), delay: 60_000 });
    result = await runSpark(['status', '--redis', server.url, '--prefix', prefix, '--json']);
    [host] = JSON.parse(result.stdout) as (typeof host)[];
    assert.deepEqual(host?.jobs.map((j) => [j.uuid, j.stage, j.state]).sort(), [
      [uuidA, 'sign', 'waiting'],
      [uuidB, 'sign', 'delayed'],
    ]);

    result = await runSpark(['status', '--redis', server.url, '--prefix', prefix]);
    assert.match(result.stdout, /^sign\s+1\s+0\s+1\s+0$/m);
    assert.match(result.stdout, /hydrogen@1: 1\/2 slots busy, amd64, package-build \(seen 0s ago\)/);
    assert.match(result.stdout, /lighthouse: tcp:\/\/lh:5570, last reply 5s ago\n {2}OUTAGE for 4s: no reply within 15000 ms/);
    assert.match(result.stdout, new RegExp(`${uuidA} {2}sign/waiting`));
    await build.close();
    await sign.close();
  });

  it('shows a job kind left out of requests, the job that came back rejected and why', async () => {
    const own = randomQueuePrefix();
    const block: BlockedKind = {
      kind: 'package-build',
      until: Date.now() + 90_000,
      uuid: uuidB,
      reason: 'this worker is missing an environment: bookworm',
      needsOperator: true,
    };
    await redis.hset(blockedKindsKey(own), block.kind, JSON.stringify(block));
    const result = await runSpark(['status', '--redis', server.url, '--prefix', own]);
    assert.equal(result.stderr, '');
    assert.match(
      result.stdout,
      new RegExp(
        `not asking for package-build jobs for 1m \\d+s: job ${uuidB} came back after this worker rejected it: this worker is missing an environment: bookworm \\(an operator must fix this host`,
      ),
    );
  });

  it('watches several hosts at once and says which Redis it cannot read', async () => {
    const result = await runSpark(['status', '--redis', server.url, '--redis', 'redis://127.0.0.1:1', '--prefix', prefix, '--json']);
    assert.equal(result.code, 69);
    assert.match(result.stderr, /^spark status: cannot read redis:\/\/127\.0\.0\.1:1: Redis connection closed: connect ECONNREFUSED/);
    const hosts = JSON.parse(result.stdout) as { redis: string; error?: string }[];
    assert.deepEqual(
      hosts.map((host) => [host.redis.split(' ')[0], host.error === undefined]),
      [
        [hostname(), true],
        [`${hostname()}-2`, false],
      ],
    );
  });

  it('shows an upload that is retrying: what fails, when the next try is, and when it gives up', async () => {
    const uploads = new Queue('upload', { connection: redis, prefix });
    const now = Date.now();
    const job = await uploads.add('upload', { x: 1 }, { jobId: stageJobId({ uuid: uuidB, round: '2' }, 'upload'), delay: 60_000 });
    await job.updateProgress({
      phase: 'retrying',
      problem: 'the archive holds a possibly partial hello_1.0-1_amd64.deb: … Remove incoming/master/hello_1.0-1_amd64.deb on the archive',
      tries: 3,
      firstTryAt: now - 600_000,
      nextTryAt: now + 125_000,
      giveUpAt: now + 2 * 3600_000,
    });
    const result = await runSpark(['status', '--redis', server.url, '--prefix', prefix]);
    assert.match(
      result.stdout,
      new RegExp(
        `  ${uuidB} {2}upload/delayed .*\n {4}retrying: try 3 failed: the archive holds a possibly partial hello_1\\.0-1_amd64\\.deb: … ` +
          `Remove incoming/master/hello_1\\.0-1_amd64\\.deb on the archive; next try in 2m 0[45]s, gives up and reports the job failed in 1h 59m\n`,
      ),
    );
    const json = await runSpark(['status', '--redis', server.url, '--prefix', prefix, '--json']);
    const [host] = JSON.parse(json.stdout) as { jobs: { stage: string; upload: { phase: string; tries: number } | null }[] }[];
    assert.deepEqual(
      host?.jobs.filter((j) => j.stage === 'upload').map((j) => [j.upload?.phase, j.upload?.tries]),
      [['retrying', 3]],
    );
    await uploads.close();
  });
  it('shows a sign job that waits for disk space: what it could not write, since when, the next try, when it gives up; stuck after 15 min', async () => {
    const signs = new Queue('sign', { connection: redis, prefix });
    const now = Date.now();
    const job = await signs.add(
      'sign',
      { x: 1 },
      { jobId: stageJobId({ uuid: uuidB, round: '3' }, 'sign'), delay: 60_000, timestamp: now - 20 * 60_000 },
    );
    await job.updateProgress({
      phase: 'disk-full',
      problem: 'the workspace disk is full (ENOSPC: no space left on device, write)',
      tries: 4,
      since: now - 75_000,
      nextTryAt: now + 40_000,
      giveUpAt: now + 3 * 3600_000,
    });
    const result = await runSpark(['status', '--redis', server.url, '--prefix', prefix]);
    assert.match(
      result.stdout,
      new RegExp(
        `  ${uuidB} {2}sign/delayed .*\n {4}waiting for disk space since 1m 1[456]s ago: the workspace disk is full \\(ENOSPC: no space left on device, write\\); ` +
          `next try in 3[789]s, gives up and reports the job failed in (2h 59m|3h 00m)\n`,
      ),
    );
    const json = await runSpark(['status', '--redis', server.url, '--prefix', prefix, '--json']);
    const [host] = JSON.parse(json.stdout) as {
      jobs: { stage: string; round: string; sign: { phase: string; tries: number } | null }[];
      health: { problems: { code: number; message: string }[] };
    }[];
    assert.ok(
      host?.health.problems.some(
        (problem) =>
          problem.code === 3 &&
          new RegExp(
            `^stuck: ${uuidB} in sign, delayed for 20m \\d\\ds: the workspace disk is full \\(ENOSPC: no space left on device, write\\)$`,
          ).test(problem.message),
      ),
      JSON.stringify(host?.health),
    );
    assert.deepEqual(
      host?.jobs.filter((j) => j.stage === 'sign' && j.round === '3').map((j) => [j.sign?.phase, j.sign?.tries]),
      [['disk-full', 4]],
    );
    await signs.close();
  });
});
