import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { connectRedis, createLogger, createMetrics, redisReady, serveMetrics, type Redis } from '@spark/service';
import { freePort, randomQueuePrefix, startRedisServer, type RedisServer } from '@spark/testing';

const logger = createLogger('metrics-test');

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
    const metrics = createMetrics('uploader');
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
      const endpoint = await serveMetrics(createMetrics('builder'), port, logger);
      assert.equal(endpoint.url, null);
      assert.equal((await serveMetrics(createMetrics('builder'), 0, logger)).url, null);
    } finally {
      blocker.close();
    }
  });
});
