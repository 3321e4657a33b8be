/*
 * `spark status` on a real Redis: what it reads (queues, jobs and their
 * progress, builders, the Lighthouse link, blocked kinds) and, as a
 * monitoring check, its exit code and what `--json` says for a healthy
 * worker, a Lighthouse outage (induced for real: a connector talking to the
 * Lighthouse stand-in, which is then stopped), no live builder, a stuck
 * stage, and Redis down. The rules and the text are checked on reports built
 * by hand in health.test.ts and format-status.test.ts.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { curveKeyPair } from 'zeromq';
import { formatCurveKeyFile } from '@spark/keys';
import { blockedKindsKey, builderHeartbeatsKey, lighthouseStatusKey, stageJobId, type BlockedKind } from '@spark/protocol';
import { connectRedis, redisReady, removeBuilderHeartbeat, writeBuilderHeartbeat, type Redis } from '@spark/service';
import {
  builderHeartbeat,
  randomQueuePrefix,
  startLighthouseStandIn,
  startRedisServer,
  startServiceProcess,
  waitFor,
  type LighthouseStandIn,
  type RedisServer,
  type ServiceProcess,
} from '@spark/testing';
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
    // The outage makes it unhealthy (the exit codes are below).
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

  it('reads what a retrying upload records on its job (format-status.test.ts has the text)', async () => {
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
    const json = await runSpark(['status', '--redis', server.url, '--prefix', prefix, '--json']);
    const [host] = JSON.parse(json.stdout) as { jobs: { stage: string; upload: { phase: string; tries: number } | null }[] }[];
    assert.deepEqual(
      host?.jobs.filter((j) => j.stage === 'upload').map((j) => [j.upload?.phase, j.upload?.tries]),
      [['retrying', 3]],
    );
    await uploads.close();
  });

  it('reads what a sign job waiting for disk space records on its job, and counts it stuck after 15 min', async () => {
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

interface JsonHost {
  error?: string;
  unreadable: string[];
  health: { exitCode: number; problems: { code: number; message: string }[] };
}

describe('spark status exit codes', { timeout: 120_000 }, () => {
  let server: RedisServer;
  let redis: Redis;
  before(async () => {
    server = await startRedisServer();
    redis = connectRedis(server.url, 'producer');
    await redisReady(redis);
  });
  after(async () => {
    redis.disconnect();
    await server.stop();
  });

  const heartbeat = (prefix: string) => writeBuilderHeartbeat(redis, prefix, builderHeartbeat({ id: 'hydrogen@1' }));
  const contact = (prefix: string, fields: { lastContactAt?: number | null; outageSince?: number | null } = {}) =>
    redis.set(
      lighthouseStatusKey(prefix),
      JSON.stringify({ server: 'tcp://lh:5570', lastContactAt: Date.now(), outageSince: null, lastError: null, ...fields }),
    );
  const json = async (prefix: string, extra: string[] = []) => {
    const result = await runSpark(['status', '--redis', server.url, '--prefix', prefix, '--json', ...extra]);
    return { code: result.code, hosts: JSON.parse(result.stdout) as JsonHost[] };
  };

  it('exits 0 for a healthy worker: a live builder, a recent Lighthouse reply, nothing stuck', async () => {
    const prefix = randomQueuePrefix();
    await heartbeat(prefix);
    await contact(prefix);
    const result = await runSpark(['status', '--redis', server.url, '--prefix', prefix]);
    assert.equal(result.code, 0, result.stdout);
    assert.match(result.stdout, /\nhealth: ok\n/);
    assert.deepEqual((await json(prefix)).hosts[0]?.health, { exitCode: 0, problems: [] });
  });

  it('exits 4 when no builder is alive', async () => {
    const prefix = randomQueuePrefix();
    await contact(prefix);
    const result = await runSpark(['status', '--redis', server.url, '--prefix', prefix]);
    assert.equal(result.code, 4, result.stdout);
    assert.match(result.stdout, /\nhealth: exit 4:\n {2}builders: none alive \(no heartbeat\)/);
  });

  it('exits 3 for a job stuck in a stage, with which job and why; 5 (the link) wins over 4 and 3 when all hold', async () => {
    const prefix = randomQueuePrefix();
    await heartbeat(prefix);
    await contact(prefix);
    const sign = new Queue('sign', { connection: redis, prefix });
    await sign.add('sign', { x: 1 }, { jobId: stageJobId({ uuid: uuidA, round: '1' }, 'sign'), timestamp: Date.now() - 20 * 60_000 });
    let result = await json(prefix);
    assert.equal(result.code, 3);
    assert.match(
      result.hosts[0]?.health.problems[0]?.message ?? '',
      new RegExp(`^stuck: ${uuidA} in sign, waiting for 20m \\d\\ds: spark-signer does not take it$`),
    );
    // Not stuck yet with a longer limit.
    assert.equal((await json(prefix, ['--stuck-after', '3600'])).code, 0);
    await removeBuilderHeartbeat(redis, prefix, 'hydrogen@1');
    await contact(prefix, { outageSince: Date.now() - 30_000 });
    result = await json(prefix);
    assert.equal(result.code, 5);
    assert.deepEqual(
      result.hosts[0]?.health.problems.map((p) => p.code),
      [5, 4, 3],
    );
    await sign.close();
  });

  it('exits 69 when Redis is down, and --json says which Redis it could not read and why', async () => {
    const down = await startRedisServer();
    await down.kill();
    const result = await runSpark(['status', '--redis', down.url, '--redis', server.url, '--prefix', randomQueuePrefix(), '--json']);
    await down.stop();
    assert.equal(result.code, 69);
    const hosts = JSON.parse(result.stdout) as JsonHost[];
    assert.equal(hosts.length, 2);
    assert.match(hosts[0]?.error ?? '', /ECONNREFUSED/);
    assert.match(hosts[0]?.unreadable[0] ?? '', new RegExp(`^redis://127\\.0\\.0\\.1:${down.port}: .*ECONNREFUSED`));
    assert.equal(hosts[0]?.health.exitCode, 69);
    assert.equal(hosts[1]?.error, undefined, 'the other host was read');
  });

  it('says what it could not read: a heartbeat that is not one', async () => {
    const prefix = randomQueuePrefix();
    await heartbeat(prefix);
    await contact(prefix);
    await redis.hset(builderHeartbeatsKey(prefix), 'broken', 'not json');
    const result = await json(prefix);
    assert.deepEqual(result.hosts[0]?.unreadable, [`${builderHeartbeatsKey(prefix)} broken: not a builder heartbeat`]);
  });

  describe('with a connector talking to Lighthouse', () => {
    let dir: string;
    let standIn: LighthouseStandIn;
    let connector: ServiceProcess;
    const prefix = randomQueuePrefix();
    const lighthouseKeys = curveKeyPair();
    const worker = curveKeyPair();
    const keyFile = async (file: string, keys: { publicKey: string; secretKey: string }, secret: boolean) => {
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(
        file,
        formatCurveKeyFile({
          metadata: { id: 'test' },
          curvePublicKey: keys.publicKey,
          curveSecretKey: secret ? keys.secretKey : null,
          edVerifyKey: null,
          edSigningKey: null,
        }),
      );
      await chmod(file, secret ? 0o600 : 0o644);
    };

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'spark-status-health-'));
      await keyFile(join(dir, 'curve', 'secret', 'hydrogen-spark_private.sec'), worker, true);
      await keyFile(join(dir, 'curve', 'hydrogen_lighthouse-server.pub'), lighthouseKeys, false);
      await keyFile(join(dir, 'trusted', 'hydrogen.pub.key'), worker, false);
      standIn = await startLighthouseStandIn({ serverKeys: lighthouseKeys, trustedKeysDir: join(dir, 'trusted') });
      const config = join(dir, 'spark.toml');
      await writeFile(
        config,
        `LighthouseServer = '${standIn.endpoint}'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = 'hydrogen'\n` +
          `CurveKeysDir = '${join(dir, 'curve')}'\nRedisUrl = '${server.url}'\nQueuePrefix = '${prefix}'\nWorkspaceRoot = '${join(dir, 'ws')}'\n` +
          `[connector]\nReplyTimeout = 0.5\nPollInterval = 0.1\nArchiveInfoInterval = 0.5\nMetricsPort = 0\n`,
      );
      const entry = fileURLToPath(import.meta.resolve('@spark/connector/main'));
      connector = startServiceProcess(entry, ['--config', config]);
    });
    after(async () => {
      await connector.stop();
      standIn.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('exits 5 once Lighthouse stops answering, and says so', async () => {
      // The builder's heartbeat is renewed on every probe: it counts as alive for 10 s only.
      const probe = async () => {
        await heartbeat(prefix);
        return json(prefix);
      };
      // The connector has talked to Lighthouse: healthy.
      await waitFor('the connector to record a reply from Lighthouse', async () => (await probe()).code === 0, {
        timeoutMs: 20_000,
        intervalMs: 100,
        detail: async () => JSON.stringify(await json(prefix)),
      });
      standIn.close();
      const result = await waitFor(
        'spark status to see the outage',
        async () => {
          const seen = await probe();
          return seen.code !== 0 && seen;
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );
      assert.equal(result.code, 5);
      assert.match(
        result.hosts[0]?.health.problems[0]?.message ?? '',
        /^Lighthouse link: outage for \d+s: no reply from Lighthouse at tcp:\/\/127\.0\.0\.1:\d+ within 500 ms/,
      );
      const text = await runSpark(['status', '--redis', server.url, '--prefix', prefix]);
      assert.equal(text.code, 5);
      assert.match(text.stdout, /\n {2}OUTAGE for \d+s: no reply from Lighthouse/);
    });
  });
});
