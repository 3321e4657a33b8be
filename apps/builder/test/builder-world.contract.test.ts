import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { builderCapacityChannel, builderControlChannel, type BuilderHeartbeat } from '@spark/protocol';
import { connectRedis, readBuilderHeartbeats, redisReady } from '@spark/service';
import { randomQueuePrefix, startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import type { ControlChannel } from '../src/builder.js';
import { openBuilderRedis } from '../src/builder-redis.js';
import type { HeartbeatBoard } from '../src/heartbeat.js';
import { FakeBuilderWorld } from './fake-builder-world.js';

/*
 * The contract of the builder's heartbeat board and control channel
 * (src/heartbeat.ts, src/builder.ts): the same cases run on a real
 * redis-server (builder-redis.ts) and on the in-memory ones limits.test.ts
 * uses (fake-builder-world.ts), so that test relies on nothing Redis does not do.
 */

/** The board and the channel as a builder sees them, and what the connector and `spark cancel` see. */
interface Subject {
  heartbeats: HeartbeatBoard;
  control: ControlChannel;
  /** Builder `id`'s heartbeat as the connector reads it, or undefined. */
  heartbeatOf(id: string): Promise<BuilderHeartbeat | undefined>;
  /** The builder ids announced on the capacity channel so far, in order, as the connector hears them. */
  announced(): string[];
  /** Publishes a control message, as `spark cancel` does. */
  publish(message: string): Promise<void>;
  close(): Promise<void>;
}

async function realSubject(redisUrl: string): Promise<Subject> {
  const prefix = randomQueuePrefix();
  const opened = openBuilderRedis({ redisUrl, queuePrefix: prefix, maxJobs: 1 }, pino({ level: 'silent' }));
  const connection = connectRedis(redisUrl, 'worker');
  const capacity = connectRedis(redisUrl, 'worker');
  const heard: string[] = [];
  capacity.on('message', (_channel: string, message: string) => heard.push(message));
  await capacity.subscribe(builderCapacityChannel(prefix));
  await Promise.all([opened.ready(), redisReady(connection)]);
  return {
    heartbeats: opened.heartbeats,
    control: opened.control,
    heartbeatOf: async (id) => (await readBuilderHeartbeats(connection, prefix)).find((beat) => beat.id === id),
    announced: () => heard,
    publish: async (message) => {
      await connection.publish(builderControlChannel(prefix), message);
    },
    async close() {
      await opened.close();
      await Promise.all([connection.quit(), capacity.quit()]);
    },
  };
}

function fakeSubject(): Subject {
  const world = new FakeBuilderWorld();
  const subscription = world.control.subscription();
  return {
    heartbeats: world.heartbeats,
    control: subscription,
    heartbeatOf: (id) => Promise.resolve(world.heartbeats.get(id)),
    announced: () => world.heartbeats.announced,
    publish: (message) => Promise.resolve(world.control.publish(message)),
    close: () => Promise.resolve(subscription.close()),
  };
}

const beat = (busy: number): BuilderHeartbeat => ({
  id: 'builder-1',
  slots: 2,
  busy,
  kinds: ['package-build'],
  architectures: ['amd64'],
  accepting: true,
  at: Date.now(),
});
const until = (what: string, done: () => boolean) => waitFor(what, done, { timeoutMs: 10_000, intervalMs: 10 });

for (const kind of ['Redis', 'in memory'] as const) {
  describe(`builder heartbeat board and control channel: ${kind}`, () => {
    let redis: RedisServer | null = null;
    const open = (): Promise<Subject> => (redis ? realSubject(redis.url) : Promise.resolve(fakeSubject()));

    before(async () => {
      if (kind === 'Redis') redis = await startRedisServer();
    });
    after(async () => {
      await redis?.stop();
    });

    it('keeps the last heartbeat a builder wrote, as the connector reads it, until it is removed', async () => {
      const subject = await open();
      try {
        assert.equal(await subject.heartbeatOf('builder-1'), undefined);
        await subject.heartbeats.write(beat(0));
        const busy = beat(1);
        await subject.heartbeats.write(busy);
        assert.deepEqual(await subject.heartbeatOf('builder-1'), busy);
        await subject.heartbeats.remove('builder-1');
        assert.equal(await subject.heartbeatOf('builder-1'), undefined);
        await subject.heartbeats.remove('builder-1');
      } finally {
        await subject.close();
      }
    });

    it('announces grown capacity by builder id, in order', async () => {
      const subject = await open();
      try {
        await subject.heartbeats.announceCapacity('builder-1');
        await subject.heartbeats.announceCapacity('builder-2');
        await until('two announcements heard', () => subject.announced().length === 2);
        assert.deepEqual(subject.announced(), ['builder-1', 'builder-2']);
      } finally {
        await subject.close();
      }
    });

    it('hands the listener every control message published once it listens, unchecked, in order', async () => {
      const subject = await open();
      try {
        const heard: string[] = [];
        await subject.control.listen((message) => heard.push(message));
        await subject.publish('{"action":"cancel","uuid":"not-a-uuid"}');
        await subject.publish('not json');
        await until('two messages heard', () => heard.length === 2);
        assert.deepEqual(heard, ['{"action":"cancel","uuid":"not-a-uuid"}', 'not json']);
      } finally {
        await subject.close();
      }
    });
  });
}
