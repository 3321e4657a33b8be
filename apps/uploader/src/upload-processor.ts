import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from '@spark/service';
import { stageJobId, uploadPayloadSchema } from '@spark/protocol';
import { UploadRefusedError } from './upload-files.js';
import { uploadJob, type UploadJobDeps } from './upload-job.js';
import { UploadPlanError } from './upload-order.js';
import { NoUploadTargetError } from './upload-target.js';

/**
 * The handler of the `upload` queue: validates the payload, uploads, reports.
 * A failure that retrying cannot fix (the archive refused a file, no target,
 * a bad manifest) fails the job at once with the reason; spent retries fail it
 * with the last problem. Either way the job stays failed in the queue with its
 * files in the workspace until an operator runs `spark retry-upload <uuid>`.
 */
export function createUploadProcessor(deps: UploadJobDeps, logger: Logger): (job: Job) => Promise<void> {
  return async (job) => {
    const parsed = uploadPayloadSchema.safeParse(job.data);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(payload)'}: ${issue.message}`).join('; ');
      logger.error({ queueJobId: job.id }, `upload job ${job.id ?? '?'} has an invalid payload: ${problems}`);
      throw new UnrecoverableError(`invalid upload payload: ${problems}`);
    }
    const { manifest } = parsed.data;
    const log = logger.child({ jobId: manifest.uuid, round: manifest.round });
    if (job.id !== stageJobId(manifest, 'upload')) {
      log.error({ queueJobId: job.id }, `upload job id ${job.id ?? '?'} is not ${stageJobId(manifest, 'upload')}: not uploading it`);
      throw new UnrecoverableError(`upload job ${job.id ?? '?'} carries the manifest of another job`);
    }
    try {
      await uploadJob(manifest, deps, log);
    } catch (error) {
      const message = `upload failed: ${(error as Error).message}`;
      log.error(
        { err: error },
        `${message} — the files stay in the workspace; fix the cause, then run: spark retry-upload ${manifest.uuid}`,
      );
      const permanent = error instanceof UploadRefusedError || error instanceof UploadPlanError || error instanceof NoUploadTargetError;
      throw permanent ? new UnrecoverableError(message) : new Error(message, { cause: error });
    }
  };
}
