import type { Queue } from 'bullmq';
import { giveUp, type Logger } from '@spark/service';
import { parseJobId } from '@spark/protocol';
import { pause } from '@spark/lighthouse';

/**
 * Rejects back to Lighthouse every job that has waited in `build` longer than
 * `startTimeoutMs` without a builder starting it, so another worker can take
 * it. The job is removed first: BullMQ refuses to remove a job a builder has
 * just locked, and then it is not rejected.
 */
export async function rejectStaleJobs(buildQueue: Queue, reportQueue: Queue, startTimeoutMs: number, logger: Logger): Promise<number> {
  const now = Date.now();
  let rejected = 0;
  for (const job of await buildQueue.getJobs(['waiting', 'prioritized', 'delayed', 'paused'])) {
    const round = parseJobId(job.id);
    if (!round || now - job.timestamp < startTimeoutMs) continue;
    try {
      await job.remove();
    } catch {
      continue;
    }
    await giveUp(reportQueue, round, 'rejected', `no builder started the job within ${startTimeoutMs / 1000} s`, logger);
    rejected++;
  }
  return rejected;
}

/** Runs {@link rejectStaleJobs} every `intervalMs` until `signal` aborts; Redis errors are logged and retried. */
export async function runStartTimeout(
  buildQueue: Queue,
  reportQueue: Queue,
  startTimeoutMs: number,
  intervalMs: number,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  while (await pause(intervalMs, signal)) {
    try {
      await rejectStaleJobs(buildQueue, reportQueue, startTimeoutMs, logger);
    } catch (error) {
      logger.error({ err: error }, 'cannot check the build queue for jobs no builder started');
    }
  }
}
