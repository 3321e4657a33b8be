import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis as IORedis } from 'ioredis';
import { curveKeyPair } from 'zeromq';
import { builderCapacityChannel, QueueName, reportJobId, type ReportPayload } from '@spark/protocol';
import { connectRedis, writeBuilderHeartbeat, type Redis } from '@spark/service';
import {
  builderHeartbeat,
  freePort,
  nodeEntryArgs,
  randomQueuePrefix,
  type RedisServer,
  runTsEntry,
  type ServiceProcess,
  startRedisServer,
  startServiceProcess,
} from '@spark/testing';
import { startLighthouseStandIn, waitFor, type LighthouseStandIn } from '@spark/testing';
import { MACHINE, writeKeyFile, type KeyPair } from './harness.js';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

/**
 * Writes the Curve keys of a connector whose `CurveKeysDir` is `<dir>/curve`
 * (the worker's secret key, Lighthouse's public key) and the worker's public
 * key into `<dir>/trusted`. Returns what the Lighthouse stand-in needs to
 * accept that worker: its key pair and that directory.
 */
async function writeCurveKeys(dir: string): Promise<{ serverKeys: KeyPair; trustedKeysDir: string }> {
  const server = curveKeyPair();
  const worker = curveKeyPair();
  const trustedKeysDir = join(dir, 'trusted');
  await writeKeyFile(join(trustedKeysDir, 'w.key'), worker, false);
  await writeKeyFile(join(dir, 'curve', 'secret', `${MACHINE}-spark_private.sec`), worker, true);
  await writeKeyFile(join(dir, 'curve', `${MACHINE}_lighthouse-server.pub`), server, false);
  return { serverKeys: server, trustedKeysDir };
}

/**
 * spark.toml for a connector with the keys of {@link writeCurveKeys} in `dir`,
 * talking to Lighthouse at `endpoint` with a 0.5 s reply timeout: `top` adds
 * top-level lines, `connector` lines of the `[connector]` table (each line
 * ending in a newline).
 */
function connectorToml(
  dir: string,
  options: { endpoint: string; redisUrl: string; prefix?: string; top?: string; connector?: string },
): string {
  return `LighthouseServer = '${options.endpoint}'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = '${MACHINE}'\nCurveKeysDir = '${join(dir, 'curve')}'\nRedisUrl = '${options.redisUrl}'\nQueuePrefix = '${options.prefix ?? randomQueuePrefix()}'\n${options.top ?? ''}[connector]\nReplyTimeout = 0.5\n${options.connector ?? ''}`;
}

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
    standIn = await startLighthouseStandIn(await writeCurveKeys(dir));
    config = join(dir, 'spark.toml');
    await writeFile(config, connectorToml(dir, { endpoint: standIn.endpoint, redisUrl: redis.url }));
  });
  after(async () => {
    standIn.close();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers --version and --help with exit 0, before reading the config or reaching Redis', async () => {
    const version = await runTsEntry(main, ['--config', '/nonexistent/spark.toml', '--version']);
    assert.equal(version.code, 0, version.stderr);
    // Run from this checkout, it names the commit checked out.
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: dirname(main), encoding: 'utf8' }).trim();
    assert.equal(version.stdout, `spark-connector 0.1.0 (commit ${head})\n`);
    const help = await runTsEntry(main, ['--help', '--config', '/nonexistent/spark.toml']);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^usage: spark-connector \[--config FILE\]$/m);
    assert.match(help.stdout, /--config FILE +spark\.toml to read \(default \/etc\/laniakea\/spark\.toml\)/);
    assert.match(help.stdout, /^ {2}SPARK_LOG_LEVEL +log level, one of fatal, error, warn, info, debug, trace, silent/m);
    assert.match(help.stdout, /SIGHUP +re-read the config file: apply LogLevel, \[connector\] PollInterval/);
    assert.match(help.stdout, /^ {2}78 +the config file/m);
  });

  it('exits 64 with the usage on an unknown option', async () => {
    const result = await runTsEntry(main, ['--confg', config]);
    assert.equal(result.code, 64);
    assert.match(result.stderr, /^spark-connector: Unknown option '--confg'\n/);
  });

  it('exits 66 naming the file when the config is missing', async () => {
    const result = await runTsEntry(main, ['--config', '/nonexistent/spark.toml']);
    assert.equal(result.code, 66);
    assert.equal(result.stderr, '/nonexistent/spark.toml: cannot read config: file not found\n');
  });

  it('exits 78 with file, line and key when the config does not check', async () => {
    await writeFile(join(dir, 'zero.toml'), (await readFile(config, 'utf8')).replace('ReplyTimeout = 0.5', 'PollInterval = -1'));
    const result = await runTsEntry(main, ['--config', join(dir, 'zero.toml')]);
    assert.equal(result.code, 78);
    assert.match(result.stderr, /^\S+zero\.toml:\d+: connector\.PollInterval: .+\n$/);
  });

  it('exits 78 with one line when SPARK_LOG_LEVEL is not a pino level', async () => {
    const result = await runTsEntry(main, ['--config', config], { env: { SPARK_LOG_LEVEL: 'verbose' } });
    assert.equal(result.code, 78);
    assert.equal(
      result.stderr,
      'spark-connector: SPARK_LOG_LEVEL="verbose" is not a log level; use one of fatal, error, warn, info, debug, trace, silent\n',
    );
  });

  it('refuses to start when the secret key file is readable by others', async () => {
    await chmod(secretFile(), 0o644);
    try {
      const result = await runTsEntry(main, ['--config', config]);
      assert.equal(result.code, 78);
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
    assert.equal(missing.code, 66);
    assert.match(missing.stderr, /nokeys-spark_private\.sec: cannot read the worker's Curve secret key: file not found/);

    const original = await readFile(serverFile(), 'utf8');
    await writeFile(serverFile(), 'curve\n    public-key = "not-a-key"\n');
    try {
      const malformed = await runTsEntry(main, ['--config', config]);
      assert.equal(malformed.code, 78);
      assert.match(
        malformed.stderr,
        /_lighthouse-server\.pub: not a usable Lighthouse server's public key: line 2: curve public-key is not a 40-character Z85 key/,
      );
    } finally {
      await writeFile(serverFile(), original);
    }
  });

  it('talks to Lighthouse, and on SIGTERM stops and exits 0', async () => {
    const child = spawn(process.execPath, [...nodeEntryArgs(main), '--config', config], {
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

/**
 * A live builder with a free slot, beating every 2 s as a builder does: a heartbeat goes stale after 10 s, which a
 * connector started on a loaded machine can take to get going. Returns what stops it.
 */
async function beatLikeABuilder(connection: Redis, prefix: string): Promise<() => void> {
  await writeBuilderHeartbeat(connection, prefix, builderHeartbeat());
  // A beat still in flight when the test closes the connection fails, harmlessly.
  const beat = () => {
    writeBuilderHeartbeat(connection, prefix, builderHeartbeat()).catch(() => undefined);
  };
  const beating = setInterval(beat, 2_000);
  return () => clearInterval(beating);
}

describe('spark-connector on SIGHUP', () => {
  it(
    'keeps running, applies a new PollInterval and LogLevel, names a restart-only key, and keeps its config when the file breaks',
    { timeout: 120_000 },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'spark-connector-hup-'));
      const redis = await startRedisServer();
      const prefix = randomQueuePrefix();
      const connection = connectRedis(redis.url, 'worker');
      let standIn: LighthouseStandIn | null = null;
      let service: ServiceProcess | null = null;
      let stopBeating = (): void => undefined;
      try {
        standIn = await startLighthouseStandIn(await writeCurveKeys(dir));
        const { endpoint } = standIn;
        const config = join(dir, 'spark.toml');
        const toml = (pollInterval: number, extra = '') =>
          connectorToml(dir, {
            endpoint,
            redisUrl: redis.url,
            prefix,
            top: extra,
            connector: `PollInterval = ${pollInterval}\nMetricsPort = 0\n`,
          });
        await writeFile(config, toml(3600));
        // A live builder with a free slot: the connector asks for a job, gets none, and waits PollInterval.
        stopBeating = await beatLikeABuilder(connection, prefix);
        const jobRequests = () => standIn!.requests.filter((r) => r.request === 'job').length;
        service = startServiceProcess(main, ['--config', config]);
        await standIn.waitFor(() => jobRequests() >= 1, 30_000);
        await sleep(1_500);
        assert.equal(jobRequests(), 1, 'PollInterval 3600: one request, then a wait');

        await writeFile(config, toml(0.2, "LogLevel = 'debug'\nMaxJobs = 3\n"));
        const seen = service.lines.length;
        service.signal('SIGHUP');
        const applied = await service.waitForLine(
          'PollInterval applied',
          (l) => l['msg'] === 'SIGHUP: applied [connector] PollInterval',
          10_000,
          seen,
        );
        assert.deepEqual([applied['from'], applied['to']], [3_600_000, 200]);
        await service.waitForLine('LogLevel applied', (l) => l['msg'] === 'SIGHUP: applied LogLevel = debug', 10_000, seen);
        const restart = await service.waitForLine('the restart-only keys', (l) => Array.isArray(l['keys']), 10_000, seen);
        assert.deepEqual(restart['keys'], ['MaxJobs']);
        assert.equal(restart['level'], 40);
        assert.match(String(restart['msg']), /apply only after a restart .*: MaxJobs$/);
        // The pause under way still has the old length; a builder announcing capacity ends it, and from then on
        // the connector asks every 0.2 s.
        await writeBuilderHeartbeat(connection, prefix, builderHeartbeat());
        await connection.publish(builderCapacityChannel(prefix), 'b1');
        const before = jobRequests();
        await standIn.waitFor(() => jobRequests() >= before + 5, 10_000);

        await writeFile(config, 'LighthouseServer = [\n');
        const broken = service.lines.length;
        service.signal('SIGHUP');
        const refused = await service.waitForLine('the refusal', (l) => String(l['msg']).includes('cannot be used'), 10_000, broken);
        assert.equal(refused['level'], 50);
        assert.match(String(refused['msg']), /keeping the running configuration: .*spark\.toml:2: TOML syntax error/);
        const after = jobRequests();
        await standIn.waitFor(() => jobRequests() >= after + 3, 10_000);
        assert.equal(service.exitCode(), undefined, 'still running');
        assert.equal(await service.stop(), 0, service.output());
      } finally {
        stopBeating();
        if (service && service.exitCode() === undefined) service.signal('SIGKILL');
        standIn?.close();
        connection.disconnect();
        await redis.stop();
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
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
        const keys = await writeCurveKeys(dir);
        // Lighthouse is away the whole time the connector is killed: the report stays in flight.
        const endpoint = `tcp://127.0.0.1:${await freePort()}`;
        const config = join(dir, 'spark.toml');
        await writeFile(config, connectorToml(dir, { endpoint, redisUrl: redis.url, prefix }));
        const report: ReportPayload = { kind: 'accepted', uuid: randomUUID(), round: '1', at: Date.now() };
        const id = reportJobId(report, { kind: 'accepted' });
        await reports.add(report.kind, report, { jobId: id });
        const success: ReportPayload = { kind: 'success', uuid: report.uuid, round: '1', at: Date.now() };
        await reports.add(success.kind, success, { jobId: reportJobId(success, { kind: 'final' }) });
        const start = () => {
          const child = spawn(process.execPath, [...nodeEntryArgs(main), '--config', config], {
            stdio: 'ignore',
          });
          children.push(child);
          return child;
        };
        const startedTimes = (times: number) =>
          waitFor(`the report to be taken up ${times} times`, async () => ((await reports.getJob(id))?.attemptsStarted ?? 0) >= times, {
            timeoutMs: 60_000,
            intervalMs: 100,
          });
        // Taken up: the connector holds the report's lock and is sending it to a Lighthouse that is not there.
        for (let run = 1; run <= 2; run++) {
          const child = start();
          await startedTimes(run);
          const exited = new Promise((resolve) => child.once('exit', resolve));
          child.kill('SIGKILL');
          await exited;
        }
        start();
        await startedTimes(3);
        standIn = await startLighthouseStandIn({ endpoint, ...keys });
        await standIn.waitFor((requests) => requests.some((r) => r.request === 'job-accepted' && r['uuid'] === report.uuid), 30_000);
        await waitFor('the report to complete', async () => (await reports.getJobState(id)) === 'completed', {
          timeoutMs: 10_000,
          intervalMs: 100,
          detail: async () => `its state: ${await reports.getJobState(id)}`,
        });
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

describe('spark-connector metrics', () => {
  it(
    'serves /metrics on [connector] MetricsListen: its version, the link to Lighthouse up, the live builders, every queue',
    { timeout: 120_000 },
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'spark-connector-metrics-'));
      const redis = await startRedisServer();
      const prefix = randomQueuePrefix();
      const connection = connectRedis(redis.url, 'worker');
      let standIn: LighthouseStandIn | null = null;
      let service: ServiceProcess | null = null;
      let stopBeating = (): void => undefined;
      try {
        standIn = await startLighthouseStandIn(await writeCurveKeys(dir));
        stopBeating = await beatLikeABuilder(connection, prefix);
        const port = await freePort();
        const config = join(dir, 'spark.toml');
        await writeFile(
          config,
          connectorToml(dir, {
            endpoint: standIn.endpoint,
            redisUrl: redis.url,
            prefix,
            top: `MetricsListen = '::1'\n`,
            connector: `MetricsPort = ${port}\nMetricsListen = '127.0.0.2'\n`,
          }),
        );
        service = startServiceProcess(main, ['--config', config]);
        const serving = await service.waitForLine('the metrics endpoint', (l) => String(l['msg']).startsWith('metrics: serving'));
        assert.equal(serving['url'], `http://127.0.0.2:${port}/metrics`);
        const linkUp = new RegExp(`^spark_lighthouse_link_up\\{server="${standIn.endpoint}",service="connector"\\} 1$`, 'm');
        let text = '';
        await waitFor(
          'the link to be up in the scrape',
          async () => linkUp.test((text = await (await fetch(`http://127.0.0.2:${port}/metrics`)).text())),
          { timeoutMs: 30_000, intervalMs: 50, detail: () => text },
        );
        assert.match(text, /^spark_build_info\{version="0\.1\.0",node="[0-9.]+",service="connector"\} 1$/m);
        assert.match(text, /^spark_lighthouse_last_contact_seconds\{server="[^"]+",service="connector"\} \d+(\.\d+)?$/m);
        assert.match(text, /^spark_builders_alive\{accepting="true",service="connector"\} 1$/m);
        for (const queue of Object.values(QueueName)) {
          assert.match(text, new RegExp(`^spark_queue_jobs\\{queue="${queue}",state="waiting",service="connector"\\} \\d+$`, 'm'));
        }
        // Only there: not on 127.0.0.1, nor on the top-level MetricsListen the [connector] one overrides.
        for (const elsewhere of [`http://127.0.0.1:${port}/metrics`, `http://[::1]:${port}/metrics`]) {
          await assert.rejects(fetch(elsewhere), (error: { cause?: { code?: string } }) => error.cause?.code === 'ECONNREFUSED');
        }
        assert.equal(await service.stop(), 0, service.output());
      } finally {
        stopBeating();
        if (service && service.exitCode() === undefined) service.signal('SIGKILL');
        standIn?.close();
        connection.disconnect();
        await redis.stop();
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
