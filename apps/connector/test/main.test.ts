import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis as IORedis } from 'ioredis';
import { curveKeyPair } from 'zeromq';
import { QueueName, reportJobId, type ReportPayload } from '@spark/protocol';
import { freePort, runTsEntry, startRedisServer, randomQueuePrefix, type RedisServer } from '@spark/testing';
import { startLighthouseStandIn, type LighthouseStandIn } from '@spark/testing';
import { MACHINE, writeKeyFile } from './harness.js';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

describe('spark-connector (the command)', () => {
  let dir: string;
  let redis: RedisServer;
  let standIn: LighthouseStandIn;
  let config: string;
  const secretFile = () => join(dir, 'curve', 'secret', `${MACHINE}-spark_private.sec`);
  const serverFile = () => join(dir, 'curve', `${MACHINE}_lighthouse-server.pub`);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-connector-main-'));
    redis = await startRedisServer();
    const server = curveKeyPair();
    const worker = curveKeyPair();
    await writeKeyFile(join(dir, 'trusted', 'w.key'), worker, false);
    standIn = await startLighthouseStandIn({ serverKeys: server, trustedKeysDir: join(dir, 'trusted') });
    await writeKeyFile(secretFile(), worker, true);
    await writeKeyFile(serverFile(), server, false);
    config = join(dir, 'spark.toml');
    await writeFile(
      config,
      `LighthouseServer = '${standIn.endpoint}'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = '${MACHINE}'\nCurveKeysDir = '${join(dir, 'curve')}'\nRedisUrl = '${redis.url}'\nQueuePrefix = '${randomQueuePrefix()}'\n[connector]\nReplyTimeout = 0.5\n`,
    );
  });
  after(async () => {
    standIn.close();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('exits 2 naming the file when the config is missing', async () => {
    const result = await runTsEntry(main, ['--config', '/nonexistent/spark.toml']);
    assert.equal(result.code, 2);
    assert.equal(result.stderr.trim(), '/nonexistent/spark.toml: cannot read config: file not found');
  });

  it('refuses to start when the secret key file is readable by others', async () => {
    await chmod(secretFile(), 0o644);
    try {
      const result = await runTsEntry(main, ['--config', config]);
      assert.equal(result.code, 2);
      assert.equal(
        result.stderr.trim(),
        `spark-connector: ${secretFile()}: the secret key is readable by group or others (mode 0644); run: chmod 600 ${secretFile()}`,
      );
    } finally {
      await chmod(secretFile(), 0o600);
    }
  });

  it('refuses to start when a key file is missing or malformed', async () => {
    await writeFile(
      join(dir, 'bad.toml'),
      (await readFile(config, 'utf8')).replace(`MachineName = '${MACHINE}'`, "MachineName = 'nokeys'"),
    );
    const missing = await runTsEntry(main, ['--config', join(dir, 'bad.toml')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nokeys-spark_private\.sec: cannot read the worker's Curve secret key: file not found/);

    const original = await readFile(serverFile(), 'utf8');
    await writeFile(serverFile(), 'curve\n    public-key = "not-a-key"\n');
    try {
      const malformed = await runTsEntry(main, ['--config', config]);
      assert.equal(malformed.code, 2);
      assert.match(
        malformed.stderr,
        /_lighthouse-server\.pub: not a usable Lighthouse server's public key: line 2: curve public-key is not a 40-character Z85 key/,
      );
    } finally {
      await writeFile(serverFile(), original);
    }
  });

  it('talks to Lighthouse, and on SIGTERM stops and exits 0', async () => {
    const child = spawn(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', main, '--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await standIn.waitFor((requests) => requests.some((r) => r.request === 'archive-info'), 20_000);
      child.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 10_000))]);
      assert.equal(code, 0, stdout);
      assert.match(stdout, /"msg":"stopped"/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

describe('spark-connector killed while a report waits for Lighthouse', () => {
  it(
    'delivers the report after two kill -9 in a row (its job is not failed as stalled), and the next report only after it',
    { timeout: 120_000 },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'spark-connector-kill-'));
      const redis = await startRedisServer();
      const prefix = randomQueuePrefix();
      const connection = new IORedis(redis.url, { maxRetriesPerRequest: null });
      const reports = new Queue(QueueName.report, { connection, prefix });
      const children: ChildProcess[] = [];
      let standIn: LighthouseStandIn | null = null;
      try {
        const server = curveKeyPair();
        const worker = curveKeyPair();
        await writeKeyFile(join(dir, 'trusted', 'w.key'), worker, false);
        await writeKeyFile(join(dir, 'curve', 'secret', `${MACHINE}-spark_private.sec`), worker, true);
        await writeKeyFile(join(dir, 'curve', `${MACHINE}_lighthouse-server.pub`), server, false);
        // Lighthouse is away the whole time the connector is killed: the report stays in flight.
        const endpoint = `tcp://127.0.0.1:${await freePort()}`;
        const config = join(dir, 'spark.toml');
        await writeFile(
          config,
          `LighthouseServer = '${endpoint}'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = '${MACHINE}'\nCurveKeysDir = '${join(dir, 'curve')}'\nRedisUrl = '${redis.url}'\nQueuePrefix = '${prefix}'\n[connector]\nReplyTimeout = 0.5\n`,
        );
        const report: ReportPayload = { kind: 'accepted', uuid: randomUUID(), round: '1', at: Date.now() };
        const id = reportJobId(report, { kind: 'accepted' });
        await reports.add(report.kind, report, { jobId: id });
        const success: ReportPayload = { kind: 'success', uuid: report.uuid, round: '1', at: Date.now() };
        await reports.add(success.kind, success, { jobId: reportJobId(success, { kind: 'final' }) });
        const start = () => {
          const child = spawn(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', main, '--config', config], {
            stdio: 'ignore',
          });
          children.push(child);
          return child;
        };
        const startedTimes = async (times: number) => {
          const deadline = Date.now() + 60_000;
          while (((await reports.getJob(id))?.attemptsStarted ?? 0) < times) {
            if (Date.now() > deadline) throw new Error(`the report was not taken up ${times} times`);
            await sleep(100);
          }
        };
        for (let run = 1; run <= 2; run++) {
          const child = start();
          await startedTimes(run);
          await sleep(300);
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGKILL');
          await exited;
        }
        start();
        await startedTimes(3);
        standIn = await startLighthouseStandIn({ endpoint, serverKeys: server, trustedKeysDir: join(dir, 'trusted') });
        await standIn.waitFor((requests) => requests.some((r) => r.request === 'job-accepted' && r['uuid'] === report.uuid), 30_000);
        const deadline = Date.now() + 10_000;
        while ((await reports.getJobState(id)) !== 'completed' && Date.now() < deadline) await sleep(100);
        assert.equal(await reports.getJobState(id), 'completed');
        await standIn.waitFor((requests) => requests.some((r) => r.request === 'job-success'), 30_000);
        // The later report waited for the one the killed connectors held.
        assert.deepEqual(
          standIn.requests.filter((r) => r['uuid'] === report.uuid).map((r) => r.request),
          ['job-accepted', 'job-success'],
        );
      } finally {
        for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        standIn?.close();
        await reports.close();
        connection.disconnect();
        await redis.stop();
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
