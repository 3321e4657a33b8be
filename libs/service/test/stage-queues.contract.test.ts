import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { QueueEvents, UnrecoverableError } from 'bullmq';
import { QueueName } from '@spark/protocol';
import { FakeQueue, randomQueuePrefix, STALLED_TOO_OFTEN, startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import {
  bullmqLockingInbox,
  bullmqRetryingInbox,
  bullmqSettledFeed,
  bullmqStageInbox,
  bullmqWatchedQueue,
  connectRedis,
  createLogger,
  openQueue,
  type JobOutbox,
  type LockedJob,
  type LockingInbox,
  type RetryingInbox,
  type SettledFeed,
  type StageInbox,
  type TakenJob,
  type WatchedQueue,
} from '../src/index.js';

/*
 * The contract of a stage's queues (src/stage-queues.ts): the same cases run
 * against BullMQ on a real redis-server and against the in-memory queues the
 * stages' unit tests use (@spark/testing's fake-stage-queues.ts), so those
 * tests rely on nothing the real queue does not do.
 */

/** One queue, as a stage and a test see it. */
interface Subject {
  outbox: JobOutbox;
  /** The queue's worker (one per subject: this or {@link retrying}). */
  inbox: StageInbox;
  /** The queue's worker for jobs that may take several tries. */
  retrying(): RetryingInbox;
  /** The queue's worker that holds up to `concurrency` jobs at once, each under a lock. */
  locking(concurrency: number): LockingInbox;
  /** Makes the waiting job `id` fail as it is next taken, as a job whose holders were killed more often than `maxStalledCount`. */
  stalledTooOften(id: string): Promise<void>;
  /** What the completed job `id`'s handler resolved to. */
  result(id: string): Promise<unknown>;
  /** The queue as a process that watches it sees it. */
  watched: WatchedQueue;
  /** Hears the queue's jobs done with. */
  settled: SettledFeed;
  /** The time on the clock jobs are stamped with when added. */
  now(): number;
  /** A time `ms` from now on the clock delayed jobs go by. */
  later(ms: number): number;
  /** Lets the time pass to `at`, so that delayed jobs due by then are taken. */
  passTime(at: number): Promise<void>;
  /** What the job's handler last recorded it doing. */
  progress(id: string): Promise<unknown>;
  /** Where the job `id` is: waiting, active, completed, failed, or missing. */
  state(id: string): Promise<string>;
  /** Removes the job `id`, as an operator or a test does. */
  remove(id: string): Promise<void>;
  close(): Promise<void>;
}

function realSubject(redisUrl: string): Subject {
  const logger = createLogger('contract', new Writable({ write: (_chunk, _encoding, done) => done() }));
  const connection = connectRedis(redisUrl, 'worker');
  const workerConnection = connectRedis(redisUrl, 'worker');
  const prefix = randomQueuePrefix();
  const queue = openQueue(QueueName.sign, connection, prefix, logger);
  const locks = { lockDuration: 10_000, stalledInterval: 5_000 };
  const inbox = bullmqStageInbox(QueueName.sign, workerConnection, prefix, logger, locks);
  let retrying: RetryingInbox | null = null;
  let locking: LockingInbox | null = null;
  // From the stream's start, so no event is missed between opening and the first read (the queue is new).
  const eventsConnection = connectRedis(redisUrl, 'worker');
  const events = new QueueEvents(QueueName.sign, { connection: eventsConnection, prefix, lastEventId: '0-0' });
  return {
    outbox: queue,
    inbox,
    retrying: () => (retrying = bullmqRetryingInbox(QueueName.sign, workerConnection, prefix, logger, locks)),
    locking: (concurrency) => (locking = bullmqLockingInbox(QueueName.sign, workerConnection, prefix, logger, { ...locks, concurrency })),
    async stalledTooOften(id) {
      // What BullMQ's stalled-job check (moveStalledJobsToWait) writes on such a job as it puts it back to wait.
      await connection.hset(queue.toKey(id), 'defa', 'job stalled more than allowable limit');
    },
    result: async (id): Promise<unknown> => (await queue.getJob(id))?.returnvalue as unknown,
    watched: bullmqWatchedQueue(queue),
    settled: bullmqSettledFeed(events),
    now: () => Date.now(),
    later: (ms) => Date.now() + ms,
    // BullMQ promotes a delayed job by itself once Redis's clock passes its time.
    passTime: () => Promise.resolve(),
    progress: async (id) => (await queue.getJob(id))?.progress,
    async state(id) {
      const state = await queue.getJobState(id);
      return state === 'unknown' ? 'missing' : state;
    },
    async remove(id) {
      await queue.remove(id);
    },
    async close() {
      await inbox.close();
      await retrying?.close();
      await locking?.close();
      await queue.close();
      await events.close();
      await Promise.all([connection.quit(), workerConnection.quit(), eventsConnection.quit()]);
    },
  };
}

function fakeSubject(): Subject {
  const clock = { time: 1_700_000_000_000, now: () => clock.time };
  const queue = new FakeQueue(clock);
  const inbox = queue.inbox();
  let retrying: RetryingInbox | null = null;
  let locking: LockingInbox | null = null;
  return {
    outbox: queue,
    inbox,
    retrying: () => (retrying = queue.retryingInbox()),
    locking: (concurrency) => (locking = queue.lockingInbox(concurrency)),
    stalledTooOften: (id) => Promise.resolve(queue.stalledTooOften(id)),
    result: (id) => Promise.resolve(queue.job(id)?.returnvalue),
    watched: queue,
    settled: queue,
    now: () => clock.now(),
    later: (ms) => clock.time + ms,
    passTime: (at) => {
      clock.time = Math.max(clock.time, at);
      queue.promoteDue(clock);
      return Promise.resolve();
    },
    progress: (id) => Promise.resolve(queue.job(id)?.progress),
    state: (id) => Promise.resolve(queue.job(id)?.state ?? 'missing'),
    remove: (id) => Promise.resolve(queue.remove(id)),
    close: async () => {
      await inbox.close();
      await retrying?.close();
      await locking?.close();
    },
  };
}

/** What a worker's handler saw: the jobs it took, in order, and the most it held at once. */
function recorder(gate: () => Promise<void> = () => Promise.resolve()) {
  const taken: TakenJob[] = [];
  const failed: { id: string | undefined; message: string }[] = [];
  let holding = 0;
  let most = 0;
  return {
    taken,
    failed,
    most: () => most,
    handle: async (job: TakenJob) => {
      taken.push(job);
      most = Math.max(most, ++holding);
      try {
        await gate();
        const data = job.data as { fail?: 'plain' | 'unrecoverable' };
        if (data.fail === 'plain') throw new Error(`job ${job.id ?? ''} failed`);
        if (data.fail === 'unrecoverable') throw new UnrecoverableError(`job ${job.id ?? ''} refused`);
      } finally {
        holding--;
      }
    },
    onFailed: (id: string | undefined, error: Error) => failed.push({ id, message: error.message }),
  };
}

const until = (what: string, done: () => boolean | Promise<boolean>) => waitFor(what, done, { timeoutMs: 10_000, intervalMs: 10 });

for (const kind of ['BullMQ on Redis', 'in memory'] as const) {
  describe(`stage queues: ${kind}`, () => {
    let redis: RedisServer | null = null;
    const open = (): Subject => (redis ? realSubject(redis.url) : fakeSubject());

    before(async () => {
      if (kind === 'BullMQ on Redis') redis = await startRedisServer();
    });
    after(async () => {
      await redis?.stop();
    });

    it('hands jobs to the one worker one at a time, oldest first, with their payload', async () => {
      const subject = open();
      try {
        for (const id of ['a', 'b', 'c']) await subject.outbox.add('job', { id, n: [1, 2] }, { jobId: id });
        const seen = recorder();
        subject.inbox.run(seen.handle, seen.onFailed);
        await until('three jobs taken', () => seen.taken.length === 3);
        assert.deepEqual(seen.taken, [
          { id: 'a', data: { id: 'a', n: [1, 2] } },
          { id: 'b', data: { id: 'b', n: [1, 2] } },
          { id: 'c', data: { id: 'c', n: [1, 2] } },
        ]);
        assert.equal(seen.most(), 1);
        await until('c completed', async () => (await subject.state('c')) === 'completed');
      } finally {
        await subject.close();
      }
    });

    it('adds nothing under an id the queue keeps, waiting or done with; a removed id may be added again', async () => {
      const subject = open();
      try {
        await subject.outbox.add('job', { v: 1 }, { jobId: 'x' });
        await subject.outbox.add('job', { v: 2 }, { jobId: 'x' });
        const seen = recorder();
        subject.inbox.run(seen.handle, seen.onFailed);
        await until('x completed', async () => (await subject.state('x')) === 'completed');
        await subject.outbox.add('job', { v: 3 }, { jobId: 'x' });
        await subject.outbox.add('job', { v: 4 }, { jobId: 'y' });
        await until('y completed', async () => (await subject.state('y')) === 'completed');
        assert.deepEqual(
          seen.taken.map((job) => job.data),
          [{ v: 1 }, { v: 4 }],
        );
        await subject.remove('x');
        assert.equal(await subject.state('x'), 'missing');
        await subject.outbox.add('job', { v: 5 }, { jobId: 'x' });
        await until('x taken again', () => seen.taken.length === 3);
        assert.deepEqual(seen.taken[2], { id: 'x', data: { v: 5 } });
      } finally {
        await subject.close();
      }
    });

    it('fails a job whose handler throws, with no other try, tells `failed`, and keeps it', async () => {
      const subject = open();
      try {
        await subject.outbox.add('job', { fail: 'plain' }, { jobId: 'p' });
        await subject.outbox.add('job', { fail: 'unrecoverable' }, { jobId: 'u' });
        await subject.outbox.add('job', {}, { jobId: 'ok' });
        const seen = recorder();
        subject.inbox.run(seen.handle, seen.onFailed);
        await until('two failures heard', () => seen.failed.length === 2);
        await until('ok completed', async () => (await subject.state('ok')) === 'completed');
        assert.deepEqual(seen.failed, [
          { id: 'p', message: 'job p failed' },
          { id: 'u', message: 'job u refused' },
        ]);
        assert.deepEqual(
          seen.taken.map((job) => job.id),
          ['p', 'u', 'ok'],
        );
        assert.equal(await subject.state('p'), 'failed');
        assert.equal(await subject.state('u'), 'failed');
        await subject.outbox.add('job', {}, { jobId: 'p' });
        assert.equal(await subject.state('p'), 'failed', 'a failed job is kept: its id adds nothing');
      } finally {
        await subject.close();
      }
    });

    it('closes once the job in hand is done with, and takes no other', async () => {
      const subject = open();
      let release = (): void => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const seen = recorder(() => gate);
      try {
        await subject.outbox.add('job', {}, { jobId: 'held' });
        await subject.outbox.add('job', {}, { jobId: 'next' });
        subject.inbox.run(seen.handle, seen.onFailed);
        await until('held taken', () => seen.taken.length === 1);
        let closed = false;
        const closing = subject.inbox.close().then(() => (closed = true));
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(closed, false, 'close waits for the job in hand');
        release();
        await closing;
        assert.equal(await subject.state('held'), 'completed');
        assert.deepEqual(
          seen.taken.map((job) => job.id),
          ['held'],
        );
        assert.equal(await subject.state('next'), 'waiting');
      } finally {
        release();
        await subject.close();
      }
    });

    it('delays a job whose try asks for another, takes the others meanwhile, and tries it again once its time has come', async () => {
      const subject = open();
      try {
        const inbox = subject.retrying();
        const tries: string[] = [];
        const seen: unknown[] = [];
        const failed: string[] = [];
        let retryAt = 0;
        await subject.outbox.add('job', {}, { jobId: 'again' });
        inbox.run(
          async (job, setProgress) => {
            tries.push(job.id ?? '');
            if (job.id === 'again') seen.push(job.progress);
            await setProgress({ try: tries.filter((id) => id === job.id).length });
            if (job.id === 'again' && tries.length === 1) {
              retryAt = subject.later(1_000);
              return { retryAt };
            }
            return { done: { result: 'uploaded' } };
          },
          (id) => failed.push(id ?? ''),
        );
        await until('again delayed', async () => (await subject.state('again')) === 'delayed');
        await subject.outbox.add('job', {}, { jobId: 'other' });
        await until('other completed', async () => (await subject.state('other')) === 'completed');
        assert.deepEqual(tries, ['again', 'other'], 'the delayed job is not taken before its time');
        await subject.passTime(retryAt);
        await until('again completed', async () => (await subject.state('again')) === 'completed');
        assert.deepEqual(tries, ['again', 'other', 'again']);
        assert.deepEqual(await subject.progress('again'), { try: 2 });
        assert.deepEqual(seen, [undefined, { try: 1 }], 'a try is taken with what the try before it recorded');
        assert.deepEqual(await subject.result('again'), { result: 'uploaded' }, 'the completed job keeps what its last try gave back');
        assert.deepEqual(failed, [], 'a delayed try is no failure');
      } finally {
        await subject.close();
      }
    });

    it('holds up to `concurrency` jobs at once, each under a lock it holds; keeps what the handler resolved to; hears of each job moved on', async () => {
      const subject = open();
      let release = (): void => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      try {
        for (const id of ['a', 'b', 'c']) await subject.outbox.add('job', { id }, { jobId: id });
        await subject.outbox.add('job', { fail: 'plain' }, { jobId: 'f' });
        const held: LockedJob[] = [];
        const failed: { id: string | undefined; message: string }[] = [];
        let settled = 0;
        let holding = 0;
        let most = 0;
        const inbox = subject.locking(2);
        inbox.run(
          async (job) => {
            held.push(job);
            most = Math.max(most, ++holding);
            try {
              await gate;
              if ((job.data as { fail?: string }).fail) throw new Error(`job ${job.id ?? ''} failed`);
              return { built: job.id, locked: await job.holdsLock() };
            } finally {
              holding--;
            }
          },
          (id, error) => failed.push({ id, message: error.message }),
          () => settled++,
        );
        await until('two jobs held', () => held.length === 2);
        assert.deepEqual(
          held.map((job) => [job.id, job.data, job.attemptsStarted, job.lockLost.aborted]),
          [
            ['a', { id: 'a' }, 1, false],
            ['b', { id: 'b' }, 1, false],
          ],
        );
        assert.equal(await subject.state('c'), 'waiting', 'a third job waits for a free slot');
        release();
        await until('four jobs moved on', () => settled === 4);
        assert.equal(most, 2);
        assert.deepEqual(
          held.map((job) => job.id),
          ['a', 'b', 'c', 'f'],
        );
        for (const id of ['a', 'b', 'c']) assert.deepEqual(await subject.result(id), { built: id, locked: true });
        assert.deepEqual(failed, [{ id: 'f', message: 'job f failed' }]);
        assert.equal(await subject.state('f'), 'failed');
      } finally {
        release();
        await subject.close();
      }
    });

    it('counts the unstarted and active jobs, lists the unstarted ones with when they were added, and removes one unless a worker holds it', async () => {
      const subject = open();
      let release = (): void => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const seen = recorder(() => gate);
      try {
        const before = subject.now();
        for (const id of ['a', 'b', 'c']) await subject.outbox.add('job', {}, { jobId: id });
        const after = subject.now();
        assert.deepEqual(await subject.watched.load(), { unstarted: 3, active: 0 });
        subject.inbox.run(seen.handle, seen.onFailed);
        await until('a in hand', async () => (await subject.state('a')) === 'active');
        assert.deepEqual(await subject.watched.load(), { unstarted: 2, active: 1 });
        const unstarted = (await subject.watched.unstarted()).sort((x, y) => x.id.localeCompare(y.id));
        assert.deepEqual(
          unstarted.map((job) => job.id),
          ['b', 'c'],
        );
        for (const job of unstarted) assert.ok(job.addedAt >= before && job.addedAt <= after, `${job.id} stamped when added`);
        assert.equal(await subject.watched.removeUnstarted('a'), false, 'a job in hand is not removed');
        assert.equal(await subject.watched.removeUnstarted('b'), true);
        assert.equal(await subject.watched.removeUnstarted('nope'), false);
        assert.equal(await subject.state('b'), 'missing');
        assert.equal(await subject.state('a'), 'active');
        assert.deepEqual(await subject.watched.load(), { unstarted: 1, active: 1 });
        release();
        await until('c completed', async () => (await subject.state('c')) === 'completed');
        assert.deepEqual(await subject.watched.load(), { unstarted: 0, active: 0 });
      } finally {
        release();
        await subject.close();
      }
    });

    it('fails a job found stalled too often as it is taken, without reaching the handler, and tells `failed`', async () => {
      const subject = open();
      try {
        await subject.outbox.add('job', {}, { jobId: 'worn-out' });
        await subject.stalledTooOften('worn-out');
        await subject.outbox.add('job', {}, { jobId: 'fine' });
        const taken: (string | undefined)[] = [];
        const failed: { id: string | undefined; message: string }[] = [];
        let settled = 0;
        subject.locking(2).run(
          (job) => {
            taken.push(job.id);
            return Promise.resolve();
          },
          (id, error) => failed.push({ id, message: error.message }),
          () => settled++,
        );
        await until('both jobs moved on', () => settled === 2);
        assert.deepEqual(taken, ['fine']);
        assert.deepEqual(failed, [{ id: 'worn-out', message: STALLED_TOO_OFTEN }]);
        assert.equal(await subject.state('worn-out'), 'failed');
        assert.equal(await subject.state('fine'), 'completed');
      } finally {
        await subject.close();
      }
    });

    it('tells a listener each time a job is done with, completed or failed', async () => {
      const subject = open();
      try {
        let heard = 0;
        await subject.settled.listen(() => heard++);
        await subject.outbox.add('job', {}, { jobId: 'ok' });
        await subject.outbox.add('job', { fail: 'plain' }, { jobId: 'bad' });
        const seen = recorder();
        subject.inbox.run(seen.handle, seen.onFailed);
        await until('both heard', () => heard === 2);
        await subject.outbox.add('job', {}, { jobId: 'more' });
        await until('the third heard', () => heard === 3);
      } finally {
        await subject.close();
      }
    });

    it('drains on close: takes no other job, resolves once every job in hand is done with', async () => {
      const subject = open();
      let release = (): void => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      try {
        for (const id of ['one', 'two', 'three']) await subject.outbox.add('job', {}, { jobId: id });
        const taken: (string | undefined)[] = [];
        const inbox = subject.locking(2);
        inbox.run(
          async (job) => {
            taken.push(job.id);
            await gate;
          },
          () => undefined,
        );
        await until('two jobs held', () => taken.length === 2);
        let closed = false;
        const closing = inbox.close().then(() => (closed = true));
        await new Promise((resolve) => setImmediate(resolve));
        assert.equal(closed, false, 'close waits for the jobs in hand');
        release();
        await closing;
        assert.equal(await subject.state('one'), 'completed');
        assert.equal(await subject.state('two'), 'completed');
        assert.equal(await subject.state('three'), 'waiting');
        assert.deepEqual(taken, ['one', 'two']);
      } finally {
        release();
        await subject.close();
      }
    });

    it('closes at once when it never ran', async () => {
      const subject = open();
      await subject.inbox.close();
      await subject.close();
    });
  });
}
