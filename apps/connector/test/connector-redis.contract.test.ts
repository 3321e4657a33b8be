import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  BUILDER_HEARTBEAT_TTL_MS,
  builderCapacityChannel,
  lighthouseStatusKey,
  lighthouseStatusSchema,
  readJobReply,
  type BuilderHeartbeat,
  type Job,
  type LighthouseStatus,
} from '@spark/protocol';
import { BUILDER_HEARTBEAT_PRUNE_MS, connectRedis, createLogger, writeBuilderHeartbeat } from '@spark/service';
import { builderHeartbeat, packageJob, randomQueuePrefix, startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import { redisBuilderBoard, type BuilderBoard } from '../src/builder-capacity.js';
import { redisConnectorLock, type LockStore } from '../src/connector-lock.js';
import { redisKindBlocks, type KindBlockStore } from '../src/kind-blocks.js';
import { redisLighthouseNotes, type LighthouseNotes } from '../src/lighthouse-notes.js';
import { redisJobRecords, type JobRecords } from '../src/relay-records.js';
import { FakeBuilderBoard, FakeKindBlocks, FakeLighthouseNotes, FakeLockStore } from './fake-connector-world.js';
import { FakeClock, FakeRelayWorld } from './fake-relay-world.js';

/*
 * The contract of what the connector keeps in Redis besides its queues
 * (builder-capacity.ts, kind-blocks.ts, lighthouse-notes.ts,
 * connector-lock.ts, relay-records.ts): the same cases run against the Redis
 * ones on a real redis-server and against the in-memory ones the connector's
 * unit tests use (test/fake-connector-world.ts, fake-relay-world.ts).
 */

/** The connector's stores, and what the other processes do to them. */
interface Subject {
  builders: BuilderBoard;
  kindBlocks: KindBlockStore;
  notes: LighthouseNotes;
  lock: LockStore;
  records: JobRecords;
  /** Writes a builder's heartbeat, as the builder does. */
  beat(heartbeat: BuilderHeartbeat): Promise<void>;
  /** Announces capacity on the channel, as a builder does. */
  announce(): Promise<void>;
  /** The link state the connector noted, as `spark status` reads it. */
  status(): Promise<LighthouseStatus | null>;
  /** The time on the clock the lock expires by. */
  now(): number;
  /** Lets the lock's clock run until `done` holds. */
  until(what: string, done: () => Promise<boolean>): Promise<void>;
  close(): Promise<void>;
}

function realSubject(redisUrl: string): Subject {
  const redis = connectRedis(redisUrl, 'worker');
  const subscriber = connectRedis(redisUrl, 'worker');
  const prefix = randomQueuePrefix();
  const logger = createLogger('connector', new Writable({ write: (_chunk, _encoding, done) => done() }));
  return {
    builders: redisBuilderBoard(redis, subscriber, prefix, logger),
    kindBlocks: redisKindBlocks(redis, prefix),
    notes: redisLighthouseNotes(redis, prefix),
    lock: redisConnectorLock(redis, prefix),
    records: redisJobRecords(redis, prefix),
    beat: (heartbeat) => writeBuilderHeartbeat(redis, prefix, heartbeat),
    async announce() {
      await redis.publish(builderCapacityChannel(prefix), 'b1');
    },
    async status() {
      const text = await redis.get(lighthouseStatusKey(prefix));
      return text === null ? null : lighthouseStatusSchema.parse(JSON.parse(text));
    },
    now: () => Date.now(),
    async until(what, done) {
      await waitFor(what, done, { timeoutMs: 10_000, intervalMs: 20 });
    },
    async close() {
      await Promise.all([redis.quit(), subscriber.quit()]);
    },
  };
}

function fakeSubject(): Subject {
  const clock = new FakeClock();
  const builders = new FakeBuilderBoard();
  const notes = new FakeLighthouseNotes();
  return {
    builders,
    kindBlocks: new FakeKindBlocks(),
    notes,
    lock: new FakeLockStore(clock),
    records: new FakeRelayWorld(undefined, clock).life().records,
    beat(heartbeat) {
      builders.beat(heartbeat);
      return Promise.resolve();
    },
    announce() {
      builders.announce();
      return Promise.resolve();
    },
    status: () => Promise.resolve(notes.status),
    now: () => clock.now(),
    async until(what, done) {
      for (let step = 0; step < 1_000; step++) {
        if (await done()) return;
        await clock.advance(20);
      }
      throw new Error(`not done after 20 s of clock time, waiting for ${what}`);
    },
    close: () => Promise.resolve(),
  };
}

/** A job as Lighthouse hands it out. */
function handedOut(uuid: string): Job {
  const reply = readJobReply(packageJob(uuid));
  assert.equal(reply.type, 'job');
  return (reply as { job: Job }).job;
}

describe('what the connector keeps in Redis, on redis-server and in memory alike', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedisServer();
  });
  after(async () => {
    await redis.stop();
  });

  for (const [label, make] of [
    ['on redis-server', () => realSubject(redis.url)],
    ['in memory', fakeSubject],
  ] as const) {
    describe(label, () => {
      it('reads the live builders’ heartbeats in id order, leaves out stale ones, and removes those of builders long gone', async () => {
        const subject = make();
        try {
          const now = subject.now();
          await subject.beat(builderHeartbeat({ id: 'b2', at: now }));
          await subject.beat(builderHeartbeat({ id: 'b1', slots: 2, at: now - 1_000 }));
          await subject.beat(builderHeartbeat({ id: 'stale', at: now - BUILDER_HEARTBEAT_TTL_MS }));
          const goneAt = now - BUILDER_HEARTBEAT_PRUNE_MS;
          await subject.beat(builderHeartbeat({ id: 'gone', at: goneAt }));
          const live = await subject.builders.heartbeats(now);
          assert.deepEqual(
            live.map((beat) => [beat.id, beat.slots]),
            [
              ['b1', 2],
              ['b2', 1],
            ],
          );
          // Read as of just after it beat, every builder still kept counts: the one long gone was removed.
          assert.deepEqual(
            (await subject.builders.heartbeats(goneAt + 1)).map((beat) => beat.id),
            ['b1', 'b2', 'stale'],
          );
        } finally {
          await subject.close();
        }
      });

      it('tells a listener of every capacity announcement once it listens', async () => {
        const subject = make();
        try {
          let heard = 0;
          await subject.builders.listen(() => heard++);
          await subject.announce();
          await subject.announce();
          await waitFor('two announcements heard', () => heard === 2, { timeoutMs: 5_000, intervalMs: 10 });
        } finally {
          await subject.close();
        }
      });

      it('keeps one kind block per kind: set replaces, remove removes', async () => {
        const subject = make();
        try {
          assert.deepEqual(await subject.kindBlocks.all(), {});
          await subject.kindBlocks.set('package-build', 'one');
          await subject.kindBlocks.set('os-image-build', 'two');
          await subject.kindBlocks.set('package-build', 'three');
          assert.deepEqual(await subject.kindBlocks.all(), { 'package-build': 'three', 'os-image-build': 'two' });
          await subject.kindBlocks.remove('package-build');
          await subject.kindBlocks.remove('never-blocked');
          assert.deepEqual(await subject.kindBlocks.all(), { 'os-image-build': 'two' });
        } finally {
          await subject.close();
        }
      });

      it('stores the upload targets and the link state for the other processes', async () => {
        const subject = make();
        try {
          assert.equal(await subject.notes.storedTargets(), null);
          const targets = {
            archive_repos: { master: { upload_fqdn: 'archive.example.org/_upload', upload_method: 'https' as const } },
            receivedAt: 5,
          };
          await subject.notes.storeTargets(targets);
          assert.deepEqual(await subject.notes.storedTargets(), targets);
          const status: LighthouseStatus = { server: 'tcp://127.0.0.1:1', lastContactAt: 7, outageSince: null, lastError: null };
          await subject.notes.noteStatus(status);
          assert.deepEqual(await subject.status(), status);
        } finally {
          await subject.close();
        }
      });

      it('holds the lock for one holder: only it renews or releases it, and it expires unless renewed', async () => {
        const subject = make();
        const { lock } = subject;
        try {
          assert.equal(await lock.holder(), null);
          assert.equal(await lock.take('a', 10_000), true);
          assert.equal(await lock.take('b', 10_000), false);
          assert.equal(await lock.holder(), 'a');
          assert.equal(await lock.renew('b', 10_000), false);
          assert.equal(await lock.renew('a', 10_000), true);
          await lock.release('b');
          assert.equal(await lock.holder(), 'a', 'only its holder releases the lock');
          await lock.release('a');
          assert.equal(await lock.holder(), null);
          assert.equal(await lock.take('b', 300), true);
          await subject.until('the lock to expire', async () => (await lock.holder()) === null);
          assert.equal(await lock.renew('b', 300), false, 'an expired lock is not renewed');
          assert.equal(await lock.take('a', 10_000), true);
          assert.equal(await lock.holder(), 'a');
        } finally {
          await subject.close();
        }
      });

      it('records each hand-out as a later round, carrying the rejections over, and notes only the current round', async () => {
        const subject = make();
        const { records } = subject;
        try {
          const uuid = randomUUID();
          const job = handedOut(uuid);
          assert.equal(await records.read(uuid), null);
          const first = await records.recordHandOut(job, 1_000);
          assert.deepEqual([first.uuid, first.round, first.package, first.rejections], [uuid, '1000', 'hello', 0]);
          assert.deepEqual(await records.read(uuid), first);
          await records.recordEnd(first, { kind: 'rejected', reason: 'disk full', needsOperator: false }, 1_500);
          // A hand-out at the same time is still a later round.
          const second = await records.recordHandOut(job, 1_000);
          assert.equal(second.round, '1001');
          assert.deepEqual(
            [second.rejections, second.firstRejectedAt, second.lastRejection, second.endedRound],
            [1, 1_500, 'disk full', null],
          );
          // A note of the earlier round changes nothing.
          await records.recordEnd(first, { kind: 'success' }, 2_000);
          await records.recordEnding(first);
          assert.deepEqual(await records.read(uuid), second);
          // Notes of the current round made at once all hold (each a compare-and-set on the record).
          await Promise.all([records.recordEnding(second), records.recordExcerpt(second, { sender: 'builder', seq: 3 })]);
          const noted = await records.read(uuid);
          assert.equal(noted?.endingRound, '1001');
          assert.deepEqual(noted?.shownExcerpt, { round: '1001', sender: 'builder', seq: 3 });
        } finally {
          await subject.close();
        }
      });
    });
  }
});
