/*
 * In-memory pipeline queues with the behaviour a stage relies on of BullMQ
 * (stage-queues.ts in @spark/service): libs/service/test/stage-queues.contract.test.ts
 * runs the same cases against these and against BullMQ on a real redis-server.
 * What crosses processes (a killed stage's job taken up again after its lock
 * expires, a lock lost to a Redis pause, Redis ACLs) is left to the
 * integration tests on real Redis.
 *
 * The types are spelled out here rather than imported: @spark/service's tests
 * use this library, which therefore must not depend on it. They have the
 * shape of its JobOutbox, TakenJob, StageInbox, RetryingInbox, LockedJob,
 * LockingInbox, WatchedQueue and SettledFeed, which the contract test's
 * typecheck holds them to.
 */

/** A job the worker took: its id and its payload (@spark/service's TakenJob). */
export interface FakeTakenJob {
  readonly id: string | undefined;
  readonly data: unknown;
  readonly progress?: unknown;
}

/** The worker of a {@link FakeQueue} (@spark/service's StageInbox). */
export interface FakeInbox {
  run(handle: (job: FakeTakenJob) => Promise<unknown>, failed: (jobId: string | undefined, error: Error) => void): void;
  close(): Promise<void>;
}

/** A job a locking worker holds (@spark/service's LockedJob); the fake never loses a lock. */
export interface FakeLockedJob extends FakeTakenJob {
  readonly attemptsStarted: number;
  holdsLock(): Promise<boolean>;
  readonly lockLost: AbortSignal;
}

/** The worker of a {@link FakeQueue} that holds several jobs at once (@spark/service's LockingInbox). */
export interface FakeLockingInbox {
  run(
    handle: (job: FakeLockedJob) => Promise<unknown>,
    failed: (jobId: string | undefined, error: Error) => void,
    settled?: () => void,
  ): void;
  close(): Promise<void>;
}

/** Why BullMQ fails a job whose holders were killed more often than its worker's `maxStalledCount` (its moveStalledJobsToWait script). */
export const STALLED_TOO_OFTEN = 'job stalled more than allowable limit';

/** Where a job of a {@link FakeQueue} is. */
export type FakeJobState = 'waiting' | 'active' | 'delayed' | 'completed' | 'failed';

/** One job of a {@link FakeQueue}, as a test sees it. */
export interface FakeJob {
  readonly id: string;
  readonly name: string;
  readonly data: unknown;
  state: FakeJobState;
  /** Why it failed (the handler's error message), once failed. */
  failedReason?: string;
  /** What its handler last recorded it doing (a retrying inbox's `setProgress`). */
  progress?: unknown;
  /** When a delayed job is due again (ms, on the retrying inbox's clock). */
  retryAt?: number;
  /** What its handler resolved to, once completed (BullMQ's `returnvalue`). */
  returnvalue?: unknown;
  /** How often a worker took it (BullMQ's `attemptsStarted`). */
  attemptsStarted: number;
  /** The reason it fails with as it is next taken, without reaching the handler (BullMQ's deferred failure). */
  failWhenTaken?: string;
  /** When it was added (ms, on the queue's clock). */
  readonly addedAt: number;
}

/** The unfinished jobs of a {@link FakeQueue} (@spark/service's QueueLoad). */
export interface FakeQueueLoad {
  unstarted: number;
  active: number;
}

/** What a try at a job came to (@spark/service's JobTry). */
export type FakeJobTry = { done: unknown } | { retryAt: number };

/** The worker of a {@link FakeQueue} whose jobs may take several tries (@spark/service's RetryingInbox). */
export interface FakeRetryingInbox {
  run(
    handle: (job: FakeTakenJob, setProgress: (progress: object) => Promise<void>) => Promise<FakeJobTry>,
    failed: (jobId: string | undefined, error: Error) => void,
  ): void;
  close(): Promise<void>;
}

/** A value as BullMQ hands it back: it stores payloads, progress and return values as JSON, so the holder gets a copy. */
function asStored(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

/** A queue in memory: where a stage adds jobs (@spark/service's JobOutbox), and the inbox of its one worker ({@link FakeQueue.inbox}). */
export class FakeQueue {
  private readonly kept = new Map<string, FakeJob>();
  private readonly waiting: FakeJob[] = [];
  private readonly delayed: FakeJob[] = [];
  /** The workers waiting for a job (or for their close). */
  private readonly wakers = new Set<() => void>();
  private auto = 0;
  private changed: (() => void)[] = [];
  private settledListeners: (() => void)[] = [];

  /** `clock` stamps each job with the time it was added (default the wall clock, as BullMQ's producer does). */
  constructor(private readonly clock: { now(): number } = { now: () => Date.now() }) {}

  /** Resolves at the next change of a job (added, taken, done with, removed). */
  private nextChange(): Promise<void> {
    return new Promise((resolve) => this.changed.push(resolve));
  }

  private wake(): void {
    for (const wake of [...this.wakers]) wake();
  }

  private notify(): void {
    const waiting = this.changed;
    this.changed = [];
    for (const resolve of waiting) resolve();
  }

  /** Resolves with the job `id` once the queue keeps it. */
  async added(id: string): Promise<FakeJob> {
    for (;;) {
      const job = this.kept.get(id);
      if (job) return job;
      await this.nextChange();
    }
  }

  /** Resolves with the job `id` once it is done with: completed or failed. */
  settled(id: string): Promise<FakeJob> {
    return this.reached(id, ['completed', 'failed']);
  }

  /** Resolves with the job `id` once it is in one of `states`. */
  async reached(id: string, states: readonly FakeJobState[]): Promise<FakeJob> {
    for (;;) {
      const job = this.kept.get(id);
      if (job && states.includes(job.state)) return job;
      await this.nextChange();
    }
  }

  /** Every job the queue keeps, in the order they were added. */
  jobs(): FakeJob[] {
    return [...this.kept.values()];
  }

  /** The job `id`, or undefined. */
  job(id: string): FakeJob | undefined {
    return this.kept.get(id);
  }

  /** The payloads of the jobs the queue keeps, in the order they were added. */
  payloads(): unknown[] {
    return this.jobs().map((job) => job.data);
  }

  /** Removes the job `id`, waiting or done with (as BullMQ's `Job.remove`): its id may be added again. */
  remove(id: string): void {
    const job = this.kept.get(id);
    if (!job || job.state === 'active')
      throw new Error(`FakeQueue: job ${id} is ${job ? 'active' : 'not kept'}; only a kept job that is not active can be removed`);
    this.kept.delete(id);
    for (const list of [this.waiting, this.delayed]) {
      const at = list.indexOf(job);
      if (at >= 0) list.splice(at, 1);
    }
    this.notify();
  }

  /** Adds a job, or nothing when the queue keeps one under `jobId` already. The payload is copied, as BullMQ stores JSON. */
  add(name: string, data: unknown, options: { jobId?: string } = {}): Promise<unknown> {
    const id = options.jobId ?? `auto-${++this.auto}`;
    const kept = this.kept.get(id);
    if (kept) return Promise.resolve(kept);
    const job: FakeJob = {
      id,
      name,
      data: asStored(data ?? null),
      state: 'waiting',
      attemptsStarted: 0,
      addedAt: this.clock.now(),
    };
    this.kept.set(id, job);
    this.waiting.push(job);
    this.wake();
    this.notify();
    return Promise.resolve(job);
  }

  /** How many jobs are not started (waiting or delayed) and how many a worker holds (@spark/service's WatchedQueue). */
  load(): Promise<FakeQueueLoad> {
    const count = (states: FakeJobState[]) => this.jobs().filter((job) => states.includes(job.state)).length;
    return Promise.resolve({ unstarted: count(['waiting', 'delayed']), active: count(['active']) });
  }

  /** The jobs no worker has started, with when each was added. */
  unstarted(): Promise<{ id: string; addedAt: number }[]> {
    return Promise.resolve(
      this.jobs()
        .filter((job) => job.state === 'waiting' || job.state === 'delayed')
        .map((job) => ({ id: job.id, addedAt: job.addedAt })),
    );
  }

  /** Removes job `id` unless the worker holds it; true when removed. */
  removeUnstarted(id: string): Promise<boolean> {
    const job = this.kept.get(id);
    if (!job || job.state === 'active') return Promise.resolve(false);
    this.remove(id);
    return Promise.resolve(true);
  }

  /** Calls `listener` each time a job completes or fails from now on (@spark/service's SettledFeed). */
  listen(listener: () => void): Promise<void> {
    this.settledListeners.push(listener);
    return Promise.resolve();
  }

  /**
   * Moves the delayed jobs whose time has come on `clock` to the back of the
   * waiting ones, as BullMQ promotes delayed jobs; a test calls it after it
   * moved the clock. Returns how many it moved.
   */
  promoteDue(clock: { now(): number }): number {
    const due = this.delayed.filter((job) => (job.retryAt ?? 0) <= clock.now());
    for (const job of due) {
      this.delayed.splice(this.delayed.indexOf(job), 1);
      job.state = 'waiting';
      this.waiting.push(job);
    }
    if (due.length > 0) {
      this.wake();
      this.notify();
    }
    return due.length;
  }

  /**
   * Makes the waiting job `id` fail as it is next taken, without reaching the
   * handler, as BullMQ's stalled-job check does with a job whose holders were
   * killed more often than the worker's `maxStalledCount` ({@link STALLED_TOO_OFTEN}).
   */
  stalledTooOften(id: string): void {
    const job = this.kept.get(id);
    if (job?.state !== 'waiting')
      throw new Error(`FakeQueue: job ${id} is ${job ? job.state : 'not kept'}; only a waiting job can be marked stalled`);
    job.failWhenTaken = STALLED_TOO_OFTEN;
  }

  /**
   * The queue's worker. Jobs are handed out one at a time, oldest first; after
   * `close` none is taken and `close` resolves once the job in hand is done with.
   */
  inbox(): FakeInbox {
    return this.worker(async (handle, job) => ({ done: await handle(job) }));
  }

  /**
   * The worker of a queue whose jobs may take several tries: a job whose try
   * returns `retryAt` is delayed until {@link promoteDue} finds its time has
   * come, not counted as failed.
   */
  retryingInbox(): FakeRetryingInbox {
    return this.worker((handle, taken, job) =>
      handle(taken, (progress) => {
        job.progress = asStored(progress);
        return Promise.resolve();
      }),
    );
  }

  /**
   * The worker of a queue whose jobs run several at once, each under a lock:
   * up to `concurrency` jobs are held at once; `settled` hears of every job
   * moved on (completed or failed). A lock held here is never lost: losing
   * one to a Redis pause is left to the integration tests on real Redis.
   */
  lockingInbox(concurrency: number): FakeLockingInbox {
    return this.worker(
      async (handle, taken, job) => ({
        done: await handle({
          ...taken,
          attemptsStarted: job.attemptsStarted,
          holdsLock: () => Promise.resolve(true),
          lockLost: new AbortController().signal,
        }),
      }),
      concurrency,
    );
  }

  private worker<H>(
    tryJob: (handle: H, taken: FakeTakenJob, job: FakeJob) => Promise<FakeJobTry>,
    concurrency = 1,
  ): {
    run(handle: H, failed: (jobId: string | undefined, error: Error) => void, settled?: () => void): void;
    close(): Promise<void>;
  } {
    let closing = false;
    let loop: Promise<void> = Promise.resolve();
    const held = new Set<Promise<void>>();
    let wake: () => void = () => undefined;
    const change = async () => {
      await new Promise<void>((resolve) => {
        wake = resolve;
        this.wakers.add(resolve);
      });
      this.wakers.delete(wake);
    };
    const work = async (handle: H, job: FakeJob, failed: (jobId: string | undefined, error: Error) => void, settled?: () => void) => {
      const taken: FakeTakenJob =
        job.progress === undefined
          ? { id: job.id, data: asStored(job.data) }
          : { id: job.id, data: asStored(job.data), progress: asStored(job.progress) };
      try {
        if (job.failWhenTaken !== undefined) throw new Error(job.failWhenTaken);
        const outcome = await tryJob(handle, taken, job);
        if ('retryAt' in outcome) {
          job.state = 'delayed';
          job.retryAt = outcome.retryAt;
          this.delayed.push(job);
        } else {
          job.state = 'completed';
          job.returnvalue = outcome.done === undefined ? undefined : asStored(outcome.done);
          settled?.();
        }
      } catch (error) {
        const err = error instanceof Error ? error : new Error(String(error));
        job.state = 'failed';
        job.failedReason = err.message;
        failed(job.id, err);
        settled?.();
      }
      this.notify();
      if (job.state !== 'delayed') for (const listener of this.settledListeners) listener();
    };
    return {
      run: (handle, failed, settled) => {
        loop = (async () => {
          for (;;) {
            while (!closing && (this.waiting.length === 0 || held.size >= concurrency)) await change();
            if (closing) return;
            const job = this.waiting.shift() as FakeJob;
            job.state = 'active';
            job.attemptsStarted++;
            this.notify();
            const holding: Promise<void> = work(handle, job, failed, settled).finally(() => {
              held.delete(holding);
              wake();
            });
            held.add(holding);
          }
        })();
      },
      close: async () => {
        closing = true;
        wake();
        await loop;
        await Promise.all(held);
      },
    };
  }
}
