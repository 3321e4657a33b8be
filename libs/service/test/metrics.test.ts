import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { parseConfig } from '@spark/config';
import {
  connectRedis,
  createLogger,
  createMetrics,
  isLoopbackAddress,
  openWorker,
  processMetrics,
  redisReady,
  serveMetrics,
  writeBuilderHeartbeat,
  type Redis,
} from '@spark/service';
import { freePort, randomQueuePrefix, startRedisServer, type RedisServer } from '@spark/testing';

const logger = createLogger('metrics-test');
const build = { version: '1.2.3' };

/** A logger whose JSON lines land in `lines`. */
function capture() {
  const stream = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  stream.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  return { lines, logger: createLogger('metrics-test', { destination: stream, level: 'info' }) };
}

/** What a scrape of `url` came to: the status and text, or the connection error's code. */
async function scrape(url: string): Promise<{ status: number; text: string } | { error: string }> {
  try {
    const response = await fetch(url);
    return { status: response.status, text: await response.text() };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    return { error: cause?.code ?? String(error) };
  }
}

const config = (text: string) =>
  parseConfig(
    `LighthouseServer = 'tcp://lh.example.org:5570'\nAcceptedJobs = ['package-build']\nGpgKeyID = 'DEADBEEF'\nMachineName = 'm'\n${text}`,
    'spark.toml',
    {
      hostname: () => 'm',
      architectures: () => ['amd64'],
    },
  ).config;

/** Checks Prometheus text exposition format line by line (HELP/TYPE comments, samples with optional labels). */
function assertPrometheusText(text: string): void {
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)( [0-9]+)?$/;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    assert.match(line, sample, `not a Prometheus sample line: ${line}`);
  }
}

describe('metrics', () => {
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

  it('serves /metrics as Prometheus text with queue depth and the stage metrics', async () => {
    const metrics = createMetrics('uploader', build);
    const queue = new Queue('upload', { connection: redis, prefix: randomQueuePrefix() });
    await queue.add('x', {}, { jobId: 'j1.upload' });
    metrics.watchQueues([queue]);
    metrics.jobsTotal.inc({ stage: 'upload', result: 'success' });
    metrics.uploadBytes.inc(1234);
    metrics.stageDuration.observe({ stage: 'upload' }, 2);
    const endpoint = await serveMetrics(metrics, await freePort(), logger);
    try {
      assert.ok(endpoint.url);
      const response = await fetch(endpoint.url);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
      const text = await response.text();
      assertPrometheusText(text);
      assert.match(text, /^spark_queue_jobs\{queue="upload",state="waiting",service="uploader"\} 1$/m);
      assert.match(text, /^spark_jobs_total\{stage="upload",result="success",service="uploader"\} 1$/m);
      assert.match(text, /^spark_upload_bytes_total\{service="uploader"\} 1234$/m);
      assert.match(text, /^spark_stage_duration_seconds_count\{service="uploader",stage="upload"\} 1$/m);
      assert.match(text, /^spark_process_resident_memory_bytes\{service="uploader"\} \d+$/m);
      assert.ok(
        text.split('\n').includes(`spark_build_info{version="1.2.3",node="${process.versions.node}",service="uploader"} 1`),
        `no build info in:\n${text}`,
      );
      // Labelled metrics another stage owns show no sample here: an uploader never claims a Lighthouse link is down.
      assert.doesNotMatch(text, /^spark_(lighthouse_link_up|lighthouse_last_contact_seconds|builders_alive)\{/m);
      assert.equal((await fetch(endpoint.url.replace('/metrics', '/other'))).status, 404);
    } finally {
      await endpoint.close();
      await queue.close();
    }
  });

  it('runs on without metrics when the port is taken, and is off on port 0', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const { lines, logger } = capture();
      const endpoint = await serveMetrics(createMetrics('builder', build), port, logger);
      assert.equal(endpoint.url, null);
      assert.equal((await serveMetrics(createMetrics('builder', build), 0, logger)).url, null);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        lines.map((line) => line['msg']),
        [`metrics: cannot listen on 127.0.0.1:${port} (EADDRINUSE: the port is taken; set another MetricsPort); running without /metrics`],
      );
    } finally {
      blocker.close();
    }
  });

  it("counts a stage's jobs by the result its processor returned, else its outcome, else done, and failed when it threw", async () => {
    const metrics = processMetrics('builder', build);
    const prefix = randomQueuePrefix();
    const workerRedis = connectRedis(server.url, 'worker');
    const queue = new Queue('build', { connection: redis, prefix });
    const returns: Record<string, unknown> = {
      built: { outcome: 'built', result: 'depwait' },
      rejected: { outcome: 'rejected', reason: 'no image' },
      plain: undefined,
    };
    let ended = 0;
    const worker = openWorker(
      'build',
      (job) => {
        if (job.name === 'broken') throw new Error('broken');
        return Promise.resolve(returns[job.name]);
      },
      workerRedis,
      prefix,
      logger,
    );
    const allEnded = new Promise<void>((resolve) => {
      const count = () => ++ended === 4 && resolve();
      worker.on('completed', count);
      worker.on('failed', count);
    });
    try {
      for (const name of ['built', 'rejected', 'plain', 'broken']) await queue.add(name, {}, { jobId: name });
      await allEnded;
      const text = await metrics.registry.metrics();
      for (const result of ['depwait', 'rejected', 'done', 'failed']) {
        assert.match(text, new RegExp(`^spark_jobs_total\\{stage="build",result="${result}",service="builder"\\} 1$`, 'm'));
      }
      // The protocol's other build results are there from the start, at 0, for Prometheus's increase().
      for (const result of ['success', 'failure']) {
        assert.match(text, new RegExp(`^spark_jobs_total\\{stage="build",result="${result}",service="builder"\\} 0$`, 'm'));
      }
      const uploads = openWorker('upload', () => Promise.resolve(), workerRedis, prefix, logger);
      await uploads.close();
      const withUploads = await metrics.registry.metrics();
      for (const result of ['uploaded', 'gave-up', 'superseded', 'failed']) {
        assert.match(withUploads, new RegExp(`^spark_jobs_total\\{stage="upload",result="${result}",service="builder"\\} 0$`, 'm'));
      }
    } finally {
      await worker.close();
      await queue.close();
      workerRedis.disconnect();
    }
  });

  it('counts the live builders from their heartbeats, by whether they take new jobs', async () => {
    const metrics = createMetrics('connector', build);
    const prefix = randomQueuePrefix();
    const beat = { slots: 2, busy: 1, kinds: ['package-build' as const], architectures: ['amd64'], at: Date.now() };
    await writeBuilderHeartbeat(redis, prefix, { ...beat, id: 'host@1', accepting: true });
    await writeBuilderHeartbeat(redis, prefix, { ...beat, id: 'host@2', accepting: false });
    await writeBuilderHeartbeat(redis, prefix, { ...beat, id: 'host@3', accepting: true, at: Date.now() - 3_600_000 });
    const endpoint = await serveMetrics(metrics, await freePort(), logger);
    try {
      assert.ok(endpoint.url);
      const before = await scrape(endpoint.url);
      assert.ok('text' in before);
      assert.doesNotMatch(before.text, /^spark_builders_alive\{/m, 'no sample before the connector watches the heartbeats');
      metrics.watchBuilders(redis, prefix);
      const after = await scrape(endpoint.url);
      assert.ok('text' in after);
      assert.match(after.text, /^spark_builders_alive\{accepting="true",service="connector"\} 1$/m);
      assert.match(after.text, /^spark_builders_alive\{accepting="false",service="connector"\} 1$/m);
    } finally {
      await endpoint.close();
    }
  });

  it('answers a scrape while Redis is away, leaving out only what it reads from there', async () => {
    const gone = await startRedisServer();
    const producer = connectRedis(gone.url, 'producer');
    await redisReady(producer);
    const metrics = createMetrics('connector', build);
    const queue = new Queue('build', { connection: producer, prefix: randomQueuePrefix() });
    queue.on('error', () => undefined);
    metrics.watchQueues([queue]);
    metrics.watchBuilders(producer, randomQueuePrefix());
    const endpoint = await serveMetrics(metrics, await freePort(), logger);
    try {
      assert.ok(endpoint.url);
      const up = await scrape(endpoint.url);
      assert.ok('text' in up);
      assert.match(up.text, /^spark_queue_jobs\{queue="build",state="waiting",service="connector"\} 0$/m);
      assert.match(up.text, /^spark_builders_alive\{accepting="true",service="connector"\} 0$/m);
      await gone.stop();
      const down = await scrape(endpoint.url);
      assert.ok('text' in down && down.status === 200, JSON.stringify(down));
      assert.doesNotMatch(down.text, /^spark_(queue_jobs|builders_alive)\{/m);
      assert.match(down.text, /^spark_build_info\{/m);
    } finally {
      await endpoint.close();
      await queue.close().catch(() => undefined);
      producer.disconnect();
    }
  });
});

describe('MetricsListen', () => {
  it('serves /metrics on the address the config names, and not on loopback’s 127.0.0.1 when it names another', async () => {
    const port = await freePort();
    const { lines, logger } = capture();
    const connector = config(`MetricsListen = '127.0.0.2'\n`).connector;
    const endpoint = await serveMetrics(createMetrics('connector', build), port, logger, connector.metricsListen);
    try {
      assert.equal(endpoint.url, `http://127.0.0.2:${port}/metrics`);
      const there = await scrape(endpoint.url);
      assert.ok('text' in there && there.status === 200, JSON.stringify(there));
      assert.match(there.text, /^spark_build_info\{version="1\.2\.3",.*service="connector"\} 1$/m);
      assert.deepEqual(await scrape(`http://127.0.0.1:${port}/metrics`), { error: 'ECONNREFUSED' });
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        lines.map((line) => line['msg']),
        [`metrics: serving http://127.0.0.2:${port}/metrics`],
      );
    } finally {
      await endpoint.close();
    }
  });

  it('serves on an IPv6 address (a table’s own MetricsListen over the top-level one), with the URL in brackets', async () => {
    const port = await freePort();
    const uploader = config(`MetricsListen = '127.0.0.2'\n[uploader]\nMetricsListen = '::1'\n`).uploader;
    const endpoint = await serveMetrics(createMetrics('uploader', build), port, logger, uploader.metricsListen);
    try {
      assert.equal(endpoint.url, `http://[::1]:${port}/metrics`);
      const there = await scrape(endpoint.url);
      assert.ok('text' in there && there.status === 200, JSON.stringify(there));
      assert.match(there.text, /^spark_build_info\{.*service="uploader"\} 1$/m);
      assert.deepEqual(await scrape(`http://127.0.0.2:${port}/metrics`), { error: 'ECONNREFUSED' });
    } finally {
      await endpoint.close();
    }
  });

  it('serves every local address on 0.0.0.0', async () => {
    const port = await freePort();
    const endpoint = await serveMetrics(
      createMetrics('signer', build),
      port,
      logger,
      config(`MetricsListen = '0.0.0.0'\n`).signer.metricsListen,
    );
    try {
      for (const host of ['127.0.0.1', '127.0.0.3']) {
        const there = await scrape(`http://${host}:${port}/metrics`);
        assert.ok('text' in there && there.status === 200, `${host}: ${JSON.stringify(there)}`);
      }
    } finally {
      await endpoint.close();
    }
  });

  it('runs on without metrics, saying so, when the address is not one of this host’s', async () => {
    const { lines, logger } = capture();
    const port = await freePort();
    const endpoint = await serveMetrics(createMetrics('builder', build), port, logger, '198.51.100.7');
    assert.equal(endpoint.url, null);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      lines.map((line) => line['msg']),
      [
        `metrics: cannot listen on 198.51.100.7:${port} (EADDRNOTAVAIL: the address is not one of this host's; set MetricsListen to one of them, or 0.0.0.0 / ::); running without /metrics`,
      ],
    );
  });

  it('tells loopback addresses from the others', () => {
    assert.deepEqual(
      ['127.0.0.1', '127.0.0.2', '::1', '::ffff:127.0.0.1', '0.0.0.0', '::', '192.0.2.10', 'fd00::2', 'localhost'].map(isLoopbackAddress),
      [true, true, true, true, false, false, false, false, false],
    );
  });
});
