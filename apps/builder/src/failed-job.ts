import { rm } from 'node:fs/promises';
import type { Queue } from 'bullmq';
import type { Logger } from '@spark/service';
import { jobWorkspaceDir, UUID } from '@spark/protocol';
import { reportReason, sendReport } from './reports.js';

/**
 * Gives back to Lighthouse a `build` job that BullMQ failed without
 * processBuildJob finishing it — in practice one whose builder was killed
 * more times than the worker's `maxStalledCount` allows — and removes what
 * the killed runs left in its workspace. Without this the job would stay
 * running at Lighthouse for ever. `jobId` is the build job's id, the job's uuid.
 */
export async function rejectFailedBuild(
  deps: { reportQueue: Queue; workspacesDir: string; logger: Logger },
  jobId: string | undefined,
  failure: Error,
): Promise<void> {
  if (!jobId || !UUID.test(jobId)) {
    deps.logger.error({ queueJobId: jobId, err: failure }, 'a build job failed and has no uuid to reject it by');
    return;
  }
  const uuid = jobId.toLowerCase();
  const reason = `the builder could not finish the job: ${failure.message}`;
  deps.logger.warn({ jobId: uuid, reason }, 'job rejected back to Lighthouse');
  await rm(jobWorkspaceDir(deps.workspacesDir, uuid), { recursive: true, force: true }).catch(() => undefined);
  await sendReport(deps.reportQueue, { kind: 'rejected', uuid, at: Date.now(), reason: reportReason(reason) });
}
