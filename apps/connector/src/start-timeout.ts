import { giveUp, type JobOutbox, type Logger, type WatchedQueue } from '@spark/service';
import { parseJobId } from '@spark/protocol';
import type { Clock } from './clock.js';

/**
 * Rejects back to Lighthouse every job that has waited in `build` longer than
 * `startTimeoutMs` at `now` (ms) without a builder starting it, so another
 * worker can take it. The job is removed first: BullMQ refuses to remove a job
 * a builder has just locked, and then it is not rejected.
 */
export async function rejectStaleJobs(
  buildQueue: WatchedQueue,
  reports: JobOutbox,
  startTimeoutMs: number,
  now: number,
  logger: Logger,
): Promise<number> {
  let rejected = 0;
  for (const job of await buildQueue.unstarted()) {
    const round = parseJobId(job.id);
    if (!round || now - job.addedAt < startTimeoutMs) continue;
    if (!(await buildQueue.removeUnstarted(job.id))) continue;
    await giveUp(reports, round, 'rejected', `no builder started the job within ${startTimeoutMs / 1000} s`, logger, { at: now });
    rejected++;
  }
  return rejected;
}

/** Runs {@link rejectStaleJobs} every `intervalMs` on `clock` until `signal` aborts; Redis errors are logged and retried. */
export async function runStartTimeout(
  buildQueue: WatchedQueue,
  reports: JobOutbox,
  startTimeoutMs: number,
  intervalMs: number,
  clock: Clock,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  while (await clock.pause(intervalMs, signal)) {
    try {
      await rejectStaleJobs(buildQueue, reports, startTimeoutMs, clock.now(), logger);
    } catch (error) {
      logger.error({ err: error }, 'cannot check the build queue for jobs no builder started');
    }
  }
}
