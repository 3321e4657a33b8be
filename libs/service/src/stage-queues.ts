import { DelayedError, type Queue, type QueueEvents, type Worker, type WorkerOptions } from 'bullmq';
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import type { QueueName } from '@spark/protocol';
import { openWorker } from './queues.js';

/*
 * The pipeline queues as a stage uses them: what the stage relies on of
 * BullMQ, and nothing else. main.ts opens the BullMQ-backed ones; unit tests
 * use the in-memory ones of @spark/testing (fake-stage-queues.ts), which
 * libs/service/test/stage-queues.contract.test.ts holds to the same behaviour.
 */

/**
 * Where a stage adds jobs for another process: the next stage's queue, its
 * report queue. A BullMQ `Queue` is one. Adding a job under an id the queue
 * still keeps, in any state, adds nothing (BullMQ's rule): that makes every
 * hand-off and report idempotent, so a stage that does its work twice (killed
 * and restarted) hands on and reports once.
 */
export interface JobOutbox {
  add(name: string, data: unknown, options: { jobId: string }): Promise<unknown>;
}

/** A job a stage took from its queue: its id and its payload, not yet checked. */
export interface TakenJob {
  readonly id: string | undefined;
  readonly data: unknown;
  /** What an earlier try recorded with a {@link RetryingInbox}'s `setProgress`; undefined before any. */
  readonly progress?: unknown;
}

/** A BullMQ job as a {@link TakenJob}: its progress only once a try recorded one (BullMQ starts it at 0). */
function taken(job: { id?: string; data: unknown; progress: unknown }): TakenJob {
  return job.progress !== null && typeof job.progress === 'object'
    ? { id: job.id, data: job.data, progress: job.progress }
    : { id: job.id, data: job.data };
}

/**
 * The queue a stage takes its jobs from.
 *
 * - Jobs are taken one at a time, oldest first.
 * - A job is done with once its handler resolves; it is then kept (completed),
 *   so a job added again under its id adds nothing.
 * - A job whose handler throws fails, without another try, and is kept
 *   (failed); `failed` hears of it with the error. So does a job the queue
 *   fails by itself (in BullMQ, one whose holder was killed more often than the
 *   worker's `maxStalledCount`).
 */
export interface StageInbox {
  /** Starts taking jobs, each handed to `handle`; `failed` hears of every job that failed. */
  run(handle: (job: TakenJob) => Promise<unknown>, failed: (jobId: string | undefined, error: Error) => void): void;
  /** Stops taking jobs; resolves once the job in hand is done with. Safe before {@link run}. */
  close(): Promise<void>;
}

/** Lock and stalled-check timing of a stage's worker. */
export type StageLocks = Pick<WorkerOptions, 'lockDuration' | 'stalledInterval' | 'maxStalledCount'>;

/**
 * The queue `name` under `prefix` as a {@link StageInbox}: a BullMQ worker of
 * concurrency 1 on `connection` (a `worker` connection), opened by `run`.
 */
export function bullmqStageInbox(name: QueueName, connection: Redis, prefix: string, logger: Logger, locks: StageLocks): StageInbox {
  let worker: Worker | null = null;
  return {
    run(handle, failed) {
      worker = openWorker(name, (job) => handle(taken(job)), connection, prefix, logger, { concurrency: 1, ...locks });
      worker.on('failed', (job, error) => failed(job?.id, error));
    },
    close: async () => {
      await worker?.close();
    },
  };
}

/** What a try at a job that may take several came to: done, with the job's result, or to be tried again from `retryAt` (ms). */
export type JobTry = { done: unknown } | { retryAt: number };

/**
 * The queue of a stage whose jobs may take several tries (the uploader's):
 * as a {@link StageInbox}, except that a job whose handler returns a
 * `retryAt` is not done with: it waits, not counted as a failure, and is
 * taken again once that time has come, the jobs behind it taken meanwhile.
 * `setProgress` records on the job what it is doing, for `spark status`.
 */
export interface RetryingInbox {
  run(
    handle: (job: TakenJob, setProgress: (progress: object) => Promise<void>) => Promise<JobTry>,
    failed: (jobId: string | undefined, error: Error) => void,
  ): void;
  close(): Promise<void>;
}

/**
 * The queue `name` under `prefix` as a {@link RetryingInbox}: a BullMQ worker
 * of concurrency 1 on `connection` (a `worker` connection), opened by `run`;
 * a try to be made again moves the job to `delayed` until its time.
 */
export function bullmqRetryingInbox(name: QueueName, connection: Redis, prefix: string, logger: Logger, locks: StageLocks): RetryingInbox {
  let worker: Worker | null = null;
  return {
    run(handle, failed) {
      worker = openWorker(
        name,
        async (job, token) => {
          const outcome = await handle(taken(job), (progress) => job.updateProgress(progress));
          if ('done' in outcome) return outcome.done;
          await job.moveToDelayed(outcome.retryAt, token);
          throw new DelayedError();
        },
        connection,
        prefix,
        logger,
        { concurrency: 1, ...locks },
      );
      worker.on('failed', (job, error) => failed(job?.id, error));
    },
    close: async () => {
      await worker?.close();
    },
  };
}

/** A job a worker holds under a lock while it works on it (BullMQ's, renewed as the job runs). */
export interface LockedJob extends TakenJob {
  /** How often the job was taken, this time included (BullMQ's `attemptsStarted`): 1 the first time, more once a holder lost it. */
  readonly attemptsStarted: number;
  /** Whether this worker still holds the job's lock (renewing it); false once the job may be another worker's. */
  holdsLock(): Promise<boolean>;
  /** Aborted when the lock could not be renewed (Redis away for longer than it lasts): the job may be another worker's by now. */
  readonly lockLost: AbortSignal;
}

/**
 * The queue of a stage that works on several jobs at once, each under a lock
 * (the builder's):
 *
 * - Up to `concurrency` jobs are held at once, taken oldest first.
 * - A job whose handler resolves is completed and keeps what it resolved to;
 *   one whose handler throws is failed, without another try. So is a job the
 *   queue fails by itself as it takes it (in BullMQ, one whose holders were
 *   killed more often than the worker's `maxStalledCount`), without reaching
 *   the handler. `failed` hears of every failed job, `settled` of every job
 *   moved on (completed or failed): a slot is free.
 * - `close` takes no other job and resolves once the jobs in hand are done
 *   with (draining).
 */
export interface LockingInbox {
  run(handle: (job: LockedJob) => Promise<unknown>, failed: (jobId: string | undefined, error: Error) => void, settled?: () => void): void;
  /** Stops taking jobs; resolves once the jobs in hand are done with. Safe before {@link LockingInbox.run}. */
  close(): Promise<void>;
}

/** How {@link bullmqLockingInbox} opens its worker: its locks, how many jobs it holds at once, how many completed ones the queue keeps. */
export type LockingInboxOptions = StageLocks &
  Required<Pick<WorkerOptions, 'concurrency' | 'lockDuration'>> &
  Pick<WorkerOptions, 'removeOnComplete'>;

/**
 * The queue `name` under `prefix` as a {@link LockingInbox}: a BullMQ worker
 * on `connection` (a `worker` connection), opened by `run`. A job's lock
 * counts as lost when BullMQ reports it could not renew it (`lockRenewalFailed`).
 */
export function bullmqLockingInbox(
  name: QueueName,
  connection: Redis,
  prefix: string,
  logger: Logger,
  options: LockingInboxOptions,
): LockingInbox {
  let worker: Worker | null = null;
  // Per BullMQ job id: aborted when the job's lock could not be renewed.
  const lockWatch = new Map<string, AbortController>();
  return {
    run(handle, failed, settled) {
      worker = openWorker(
        name,
        async (job, token) => {
          const jobId = job.id ?? '';
          const lockLost = new AbortController();
          lockWatch.set(jobId, lockLost);
          try {
            return await handle({
              id: job.id,
              data: job.data,
              attemptsStarted: job.attemptsStarted,
              holdsLock: async () => token !== undefined && (await job.extendLock(token, options.lockDuration)) === 1,
              lockLost: lockLost.signal,
            });
          } finally {
            // A later attempt at the same job (its lock lost here) may have registered its own watch meanwhile.
            if (lockWatch.get(jobId) === lockLost) lockWatch.delete(jobId);
          }
        },
        connection,
        prefix,
        logger,
        options,
      );
      worker.on('failed', (job, error) => {
        failed(job?.id, error);
        settled?.();
      });
      worker.on('completed', () => settled?.());
      worker.on('lockRenewalFailed', (jobIds: string[]) => {
        for (const jobId of jobIds) lockWatch.get(jobId)?.abort();
      });
    },
    close: async () => {
      await worker?.close();
    },
  };
}

/** How many jobs of a queue are not finished. */
export interface QueueLoad {
  /** Jobs no worker has started: waiting, prioritized, delayed or paused. */
  unstarted: number;
  /** Jobs a worker is running. */
  active: number;
}

/** A job no worker has started, and when it was added (ms since the epoch, on the adder's clock). */
export interface UnstartedJob {
  readonly id: string;
  readonly addedAt: number;
}

/**
 * A pipeline queue as a process that watches it (not its worker) uses it:
 * the connector counts it against capacity and takes back jobs no worker
 * started in time.
 */
export interface WatchedQueue {
  load(): Promise<QueueLoad>;
  /** The jobs no worker has started, in no particular order. */
  unstarted(): Promise<UnstartedJob[]>;
  /** Removes job `id` unless a worker holds it (BullMQ refuses to remove a locked job); true when removed. */
  removeUnstarted(id: string): Promise<boolean>;
}

const UNSTARTED_STATES = ['waiting', 'prioritized', 'delayed', 'paused'] as const;

/** `queue` as a {@link WatchedQueue}. */
export function bullmqWatchedQueue(queue: Queue): WatchedQueue {
  return {
    async load() {
      const counts = await queue.getJobCounts(...UNSTARTED_STATES, 'active');
      return {
        unstarted: UNSTARTED_STATES.reduce((sum, state) => sum + (counts[state] ?? 0), 0),
        active: counts['active'] ?? 0,
      };
    },
    async unstarted() {
      const jobs = await queue.getJobs([...UNSTARTED_STATES]);
      return jobs.flatMap((job) => (job.id === undefined ? [] : [{ id: job.id, addedAt: job.timestamp }]));
    },
    async removeUnstarted(id) {
      const job = await queue.getJob(id);
      if (!job) return false;
      try {
        await job.remove();
        return true;
      } catch {
        return false;
      }
    },
  };
}

/** Hears when jobs of a queue are done with, whoever ran them. */
export interface SettledFeed {
  /** Calls `listener` each time a job of the queue completes or fails from now on. */
  listen(listener: () => void): Promise<void>;
}

/** `events` (a BullMQ QueueEvents, on a connection of its own) as a {@link SettledFeed}. */
export function bullmqSettledFeed(events: QueueEvents): SettledFeed {
  return {
    listen(listener) {
      events.on('completed', () => listener());
      events.on('failed', () => listener());
      return Promise.resolve();
    },
  };
}
