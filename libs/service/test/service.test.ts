import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { type Job } from 'bullmq';
import {
  connectRedis,
  redisReady,
  createLogger,
  lastStatusSeq,
  once,
  openQueue,
  openWorker,
  runCloseSteps,
  sendReport,
} from '@spark/service';
import { prefixPattern, reportJobId } from '@spark/protocol';
import { randomQueuePrefix, startRedisServer, startServiceProcess, type RedisServer } from '@spark/testing';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger('test', stream) };
}

describe('runCloseSteps', () => {
  it('runs every step even when an earlier one fails, and logs the failure', async () => {
    const { lines, logger } = capture();
    const ran: string[] = [];
    const errors = await runCloseSteps(
      [
        ['intake', () => ran.push('intake')],
        ['in-flight', () => Promise.reject(new Error('boom'))],
        ['redis', () => ran.push('redis')],
      ],
      logger,
    );
    assert.deepEqual(ran, ['intake', 'redis']);
    assert.equal(errors[0]?.message, 'boom');
    assert.equal(lines[0]?.['msg'], 'shutdown step "in-flight" failed; continuing with the next');
    assert.equal(lines[0]?.['service'], 'test');
  });

  it('once() makes close safe to call twice', async () => {
    let calls = 0;
    const close = once(async () => {
      calls++;
      await Promise.resolve();
    });
    await Promise.all([close(), close()]);
    await close();
    assert.equal(calls, 1);
  });
});

describe('queues on a real Redis', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedisServer();
  });
  after(() => redis.stop());

  it('opens a queue read-only without writing to Redis, and a writable one with its meta key', async () => {
    const prefix = randomQueuePrefix();
    const connection = connectRedis(redis.url, 'producer');
    await redisReady(connection);
    try {
      const reader = openQueue('build', connection, prefix, null, { readOnly: true });
      assert.equal((await reader.getJobCounts('waiting')).waiting, 0);
      await reader.close();
      assert.deepEqual(await connection.keys(prefixPattern(prefix)), [], 'a read-only queue writes nothing, not even its meta key');
      const writer = openQueue('build', connection, prefix, null);
      await writer.getJobCounts('waiting');
      await writer.close();
      assert.deepEqual(await connection.keys(prefixPattern(prefix)), [writer.keys.meta]);
    } finally {
      await connection.quit();
    }
  });

  it('hands a job from a queue to its worker', async () => {
    const { logger } = capture();
    const prefix = randomQueuePrefix();
    const producer = connectRedis(redis.url, 'producer');
    const consumer = connectRedis(redis.url, 'worker');
    await redisReady(producer);
    const queue = openQueue('sign', producer, prefix, logger);
    const seen: unknown[] = [];
    let resolveDone = () => {};
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    const worker = openWorker<{ n: number }>(
      'sign',
      async (job: Job<{ n: number }>) => {
        seen.push(job.data.n);
        resolveDone();
        return Promise.resolve();
      },
      consumer,
      prefix,
      logger,
    );
    await queue.add('x', { n: 7 }, { jobId: 'a.sign' });
    await done;
    assert.deepEqual(seen, [7]);
    await worker.close();
    await queue.close();
    producer.disconnect();
    consumer.disconnect();
  });

  it('a worker connection holds a hand-off while Redis restarts and delivers it once, instead of failing the job', async () => {
    const { logger } = capture();
    const restarting = await startRedisServer({ appendOnly: true });
    const connection = connectRedis(restarting.url, 'worker', { retryStrategy: () => 50 });
    connection.on('error', () => {});
    try {
      await redisReady(connection);
      const queue = openQueue('upload', connection, randomQueuePrefix(), logger);
      await restarting.kill();
      const handOff = queue.add('upload', { n: 1 }, { jobId: 'a.upload' });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await restarting.restart();
      const job = await handOff;
      assert.equal(job.id, 'a.upload');
      assert.equal(await queue.count(), 1);
      await queue.close();
    } finally {
      connection.disconnect();
      await restarting.stop();
    }
  });

  it('a producer connection fails fast while Redis is unreachable', async () => {
    const producer = connectRedis('redis://127.0.0.1:1', 'producer', {
      retryStrategy: () => null,
    });
    producer.on('error', () => {});
    await assert.rejects(producer.set('k', 'v'), /Stream isn't writeable|Connection is closed|enableOfflineQueue/);
    producer.disconnect();
  });
});

describe('lastStatusSeq', () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedisServer();
  });
  after(() => server.stop());

  it("finds the highest status excerpt queued for a round, also when the first ones were trimmed, and ignores other rounds' and jobs'", async () => {
    const { logger } = capture();
    const connection = connectRedis(server.url, 'producer');
    await redisReady(connection);
    const reports = openQueue('report', connection, randomQueuePrefix(), logger);
    const round = { uuid: '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1', round: '1764405000000' };
    try {
      assert.equal(await lastStatusSeq(reports, round), 0);
      for (const seq of [1, 2, 3, 11, 12]) {
        await sendReport(reports, { kind: 'status', ...round, at: seq, logExcerpt: `excerpt ${seq}` }, seq);
      }
      await sendReport(reports, { kind: 'status', ...round, round: '1764405000001', at: 1, logExcerpt: 'next round' }, 40);
      await sendReport(
        reports,
        { kind: 'status', uuid: '9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f', round: round.round, at: 1, logExcerpt: 'x' },
        50,
      );
      await sendReport(reports, { kind: 'accepted', ...round, at: 0 });
      // The oldest excerpts trimmed away, as KEEP_COMPLETED does.
      for (const seq of [1, 2, 3]) await reports.remove(reportJobId(round, { kind: 'status', seq }));
      assert.equal(await lastStatusSeq(reports, round), 12);
    } finally {
      await reports.close();
      connection.disconnect();
    }
  });
});

describe('installShutdown', () => {
  let server: RedisServer;
  const fixture = fileURLToPath(new URL('./fixtures/shutdown-race.ts', import.meta.url));
  before(async () => {
    server = await startRedisServer();
  });
  after(async () => {
    await server.stop();
  });

  it('goes on with the shutdown when a Redis command fails because close() ended its connection, and exits 0', async () => {
    const child = startServiceProcess(fixture, [server.url, 'during-shutdown']);
    await child.waitForLine('running', (line) => line['msg'] === 'running');
    assert.equal(await child.stop(), 0, child.output());
    assert.ok(
      child.lines.some((line) => line['level'] === 40 && String(line['msg']).startsWith('unhandled promise rejection while shutting down')),
      child.output(),
    );
  });

  it('exits 70 when that failure comes while the service runs', async () => {
    const child = startServiceProcess(fixture, [server.url, 'before-signal']);
    const line = await child.waitForLine('the fatal line', (l) => l['level'] === 60);
    assert.match(String(line['msg']), /^unhandled promise rejection: exiting/);
    assert.equal(await child.stop(), 70, child.output());
  });
});
