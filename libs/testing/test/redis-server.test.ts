import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { randomQueuePrefix, startRedisServer, type RedisServer } from '@spark/testing';

describe('startRedisServer', () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedisServer({ appendOnly: true });
  });
  after(() => server.stop());

  it('starts a private server that BullMQ can use, with noeviction', async () => {
    const redis = new Redis(server.url, { maxRetriesPerRequest: null });
    try {
      assert.deepEqual(await redis.config('GET', 'maxmemory-policy'), ['maxmemory-policy', 'noeviction']);
      const queue = new Queue('build', { connection: redis, prefix: randomQueuePrefix() });
      queue.on('error', () => {});
      const first = await queue.add('job', { n: 1 }, { jobId: '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1.sign' });
      const again = await queue.add('job', { n: 2 }, { jobId: '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1.sign' });
      assert.equal(again.id, first.id);
      assert.equal(await queue.count(), 1, 'a job added twice with one id is stored once');
      await queue.close();
    } finally {
      redis.disconnect();
    }
  });

  it('keeps data across a crash and restart when append-only', async () => {
    const redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    await redis.set('survives', 'yes');
    redis.disconnect();
    await server.kill();
    await server.restart();
    const again = new Redis(server.url);
    try {
      assert.equal(await again.get('survives'), 'yes');
    } finally {
      again.disconnect();
    }
  });

  it('removes its directory when stopped', async () => {
    const other = await startRedisServer();
    assert.equal(existsSync(other.dir), true);
    await other.stop();
    await other.stop();
    assert.equal(existsSync(other.dir), false);
  });
});
