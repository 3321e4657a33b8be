/*
 * `spark status` as a monitoring check: its exit code and what `--json` says
 * for a healthy worker, a Lighthouse outage (induced for real: a connector
 * talking to the Lighthouse stand-in, which is then stopped), no live builder,
 * a stuck stage, and Redis down.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { curveKeyPair } from 'zeromq';
import { formatCurveKeyFile } from '@spark/keys';
import { builderHeartbeatsKey, lighthouseStatusKey, stageJobId } from '@spark/protocol';
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

const uuid = '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1';

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
    await sign.add('sign', { x: 1 }, { jobId: stageJobId({ uuid, round: '1' }, 'sign'), timestamp: Date.now() - 20 * 60_000 });
    let result = await json(prefix);
    assert.equal(result.code, 3);
    assert.match(
      result.hosts[0]?.health.problems[0]?.message ?? '',
      new RegExp(`^stuck: ${uuid} in sign, waiting for 20m \\d\\ds: spark-signer does not take it$`),
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
