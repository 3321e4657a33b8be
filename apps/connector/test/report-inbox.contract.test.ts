import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { REPORT_QUEUES } from '@spark/protocol';
import { connectRedis, createLogger, type Redis } from '@spark/service';
import { randomQueuePrefix, startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import { bullmqReportInbox, PUT_BACK, type InboxLocks, type ReportInbox, type ReportOutcome } from '../src/report-inbox.js';
import { FakeRelayWorld, type Life } from './fake-relay-world.js';

/*
 * The contract of a report inbox (src/report-inbox.ts): the same cases run
 * against BullMQ on a real redis-server and against the in-memory inbox the
 * relay's unit tests use (test/fake-relay-world.ts), so the unit tests rely
 * on nothing the real queue does not do.
 */

/** Short locks, so the real queue's stalled check gives a killed inbox's report back in about a second. */
const LOCKS: InboxLocks = { lockDurationMs: 1_000, stalledIntervalMs: 300 };

/** One report queue and the inboxes opened on it. */
interface Subject {
  /** Queues a report with job id `id`, as a sender does (an id the queue keeps is not queued again). */
  add(id: string): Promise<void>;
  /** A new inbox on the queue (a new relay process). */
  open(): ReportInbox;
  /** Kills the process `inbox` belongs to, mid-report. */
  kill(inbox: ReportInbox): Promise<void>;
  /** The reports that failed (their handler threw). */
  failed(): Promise<string[]>;
  /** Pauses the queue, as a sender with its credentials can (BullMQ's `Queue.pause`). */
  pause(): Promise<void>;
  /** Lets time pass until `done` holds. */
  until(what: string, done: () => Promise<boolean>): Promise<void>;
  close(): Promise<void>;
}

function realSubject(redisUrl: string): Subject {
  const connection: Redis = connectRedis(redisUrl, 'worker');
  const prefix = randomQueuePrefix();
  const name = REPORT_QUEUES.builder;
  const queue = new Queue(name, { connection, prefix });
  const logger = createLogger('connector', new Writable({ write: (_chunk, _encoding, done) => done() }));
  const inboxes = new Map<ReportInbox, ReturnType<typeof bullmqReportInbox>>();
  return {
    async add(id) {
      await queue.add('status', { id }, { jobId: id, removeOnComplete: 1000 });
    },
    open() {
      const inbox = bullmqReportInbox(name, queue, connection, prefix, logger, LOCKS);
      inboxes.set(inbox, inbox);
      return inbox;
    },
    async kill(inbox) {
      await inboxes.get(inbox)?.kill();
      inboxes.delete(inbox);
    },
    async failed() {
      return (await queue.getJobs(['failed'])).map((job) => job.id ?? '');
    },
    async pause() {
      await queue.pause();
    },
    async until(what, done) {
      await waitFor(what, done, { timeoutMs: 10_000, intervalMs: 20 });
    },
    async close() {
      await Promise.all([...inboxes.values()].map((inbox) => inbox.close()));
      await queue.close();
      await connection.quit();
    },
  };
}

function fakeSubject(): Subject {
  const world = new FakeRelayWorld(LOCKS);
  const lives = new Map<ReportInbox, Life>();
  return {
    async add(id) {
      world.queues.builder.add(id, { id });
      await Promise.resolve();
    },
    open() {
      const life = world.life();
      const inbox = life.inbox('builder');
      lives.set(inbox, life);
      return inbox;
    },
    kill(inbox) {
      lives.get(inbox)?.kill();
      lives.delete(inbox);
      return Promise.resolve();
    },
    failed: () => Promise.resolve([...world.queues.builder.failed]),
    pause() {
      world.queues.builder.pause();
      return Promise.resolve();
    },
    async until(what, done) {
      try {
        await world.runUntil(done);
      } catch (error) {
        throw new Error(`${(error as Error).message}, waiting for ${what}`);
      }
    },
    async close() {
      await Promise.all([...lives.keys()].map((inbox) => inbox.close()));
    },
  };
}

/** A handler that notes every report it is given and answers as `answer` says; `hold` never answers. */
function recorder(answer: (id: string, times: number) => ReportOutcome | { hold: true } = () => 'sent') {
  const taken: string[] = [];
  let inHand = 0;
  let most = 0;
  const handle = async ({ id }: { id: string }): Promise<ReportOutcome> => {
    taken.push(id);
    inHand += 1;
    most = Math.max(most, inHand);
    const outcome = answer(id, taken.filter((t) => t === id).length);
    if (typeof outcome === 'object') return new Promise<ReportOutcome>(() => undefined);
    await Promise.resolve();
    inHand -= 1;
    return outcome;
  };
  return { taken, handle, mostAtOnce: () => most };
}

describe('a report inbox, on BullMQ and in memory alike', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedisServer();
  });
  after(async () => {
    await redis.stop();
  });

  for (const [label, make] of [
    ['BullMQ on redis-server', () => realSubject(redis.url)],
    ['in memory', fakeSubject],
  ] as const) {
    describe(label, () => {
      it('hands out reports one at a time, oldest first, a report pulled to the head first', async () => {
        const subject = make();
        try {
          for (const id of ['r1', 'r2', 'r3', 'r4']) await subject.add(id);
          const inbox = subject.open();
          await inbox.pullToHead('r3');
          const { taken, handle, mostAtOnce } = recorder();
          void inbox.run(handle);
          await subject.until('all four done with', async () => taken.length === 4 && (await inbox.state('r4')) === 'other');
          assert.deepEqual(taken, ['r3', 'r1', 'r2', 'r4']);
          assert.equal(mostAtOnce(), 1);
        } finally {
          await subject.close();
        }
      });

      it('tells where a report is: waiting, active while in hand, other once done with or never queued; a done one is still held', async () => {
        const subject = make();
        try {
          await subject.add('r1');
          await subject.add('r2');
          // A sender queueing an id the queue keeps queues nothing.
          await subject.add('r1');
          const inbox = subject.open();
          assert.deepEqual([await inbox.state('r1'), await inbox.state('r2'), await inbox.state('nope')], ['waiting', 'waiting', 'other']);
          let release: (outcome: ReportOutcome) => void = () => undefined;
          const taken: string[] = [];
          void inbox.run(async ({ id }) => {
            taken.push(id);
            return id === 'r1' ? new Promise<ReportOutcome>((resolve) => (release = resolve)) : 'sent';
          });
          await subject.until('r1 in hand', async () => (await inbox.state('r1')) === 'active');
          assert.equal(await inbox.activeCount(), 1);
          // Pulling an active report to the head does nothing to it.
          await inbox.pullToHead('r1');
          assert.equal(await inbox.state('r1'), 'active');
          assert.equal(await inbox.state('r2'), 'waiting');
          release('sent');
          await subject.until('both done with', async () => (await inbox.state('r2')) === 'other' && (await inbox.activeCount()) === 0);
          assert.deepEqual(taken, ['r1', 'r2']);
          assert.equal(await inbox.state('r1'), 'other');
          assert.deepEqual([await inbox.holds('r1'), await inbox.holds('r2'), await inbox.holds('nope')], [true, true, false]);
        } finally {
          await subject.close();
        }
      });

      it('counts a report in a paused queue as waiting, and does not hand it out', async () => {
        const subject = make();
        try {
          await subject.pause();
          await subject.add('r1');
          const inbox = subject.open();
          const { taken, handle } = recorder();
          void inbox.run(handle);
          await inbox.pullToHead('r1');
          assert.deepEqual([await inbox.state('r1'), await inbox.holds('r1'), await inbox.activeCount()], ['waiting', true, 0]);
          assert.deepEqual(taken, []);
        } finally {
          await subject.close();
        }
      });

      it('fails a report whose handler throws: done with, and the next one taken', async () => {
        const subject = make();
        try {
          for (const id of ['r1', 'r2']) await subject.add(id);
          const inbox = subject.open();
          const taken: string[] = [];
          void inbox.run(({ id }) => {
            taken.push(id);
            return id === 'r1' ? Promise.reject(new Error('broken handler')) : Promise.resolve('sent');
          });
          await subject.until('both done with', async () => taken.length === 2 && (await inbox.state('r2')) === 'other');
          assert.deepEqual(await subject.failed(), ['r1']);
          assert.equal(await inbox.state('r1'), 'other');
        } finally {
          await subject.close();
        }
      });

      it('takes a report put back again first', async () => {
        const subject = make();
        try {
          for (const id of ['r1', 'r2']) await subject.add(id);
          const inbox = subject.open();
          const { taken, handle } = recorder((id, times) => (id === 'r1' && times === 1 ? PUT_BACK : 'sent'));
          void inbox.run(handle);
          await subject.until('both done with', async () => taken.length === 3 && (await inbox.state('r2')) === 'other');
          assert.deepEqual(taken, ['r1', 'r1', 'r2']);
        } finally {
          await subject.close();
        }
      });

      it('gives a report a killed inbox held back to the head once its lock expires, not before', async () => {
        const subject = make();
        try {
          for (const id of ['r1', 'r2']) await subject.add(id);
          const killed = subject.open();
          const first = recorder((id) => (id === 'r1' ? { hold: true } : 'sent'));
          void killed.run(first.handle);
          await subject.until('r1 in hand', async () => first.taken.length === 1 && (await killed.state('r1')) === 'active');
          await subject.kill(killed);
          const next = subject.open();
          await next.watchStalled();
          // Its lock has not expired yet: the report stays active.
          assert.equal(await next.state('r1'), 'active');
          await subject.until('r1 given back', async () => (await next.activeCount()) === 0);
          assert.equal(await next.state('r1'), 'waiting');
          const second = recorder();
          void next.run(second.handle);
          await subject.until('both done with', async () => second.taken.length === 2 && (await next.activeCount()) === 0);
          assert.deepEqual(second.taken, ['r1', 'r2']);
        } finally {
          await subject.close();
        }
      });
    });
  }
});
