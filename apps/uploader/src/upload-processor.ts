import { UnrecoverableError } from 'bullmq';
import type { JobTry, Logger, TakenJob } from '@spark/service';
import { stageJobId, uploadPayloadSchema, type UploadState } from '@spark/protocol';
import { uploadJob, type UploadJobDeps } from './upload-job.js';

/**
 * The handler of the `upload` queue: validates the payload, then makes one
 * try at the upload (`uploadJob`). A try that fails asks to be tried again
 * at its time, so one failing upload does not hold up the others; the job is
 * done (with an `UploadOutcome`) once the round is reported to
 * Lighthouse, uploaded or given up. A job that is not an upload of its own
 * round fails without another try.
 */
export function createUploadHandler(
  deps: UploadJobDeps,
  logger: Logger,
): (job: TakenJob, setProgress: (state: UploadState) => Promise<void>) => Promise<JobTry> {
  return async (job, setProgress) => {
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
    const outcome = await uploadJob(manifest, deps, log, setProgress);
    return 'ended' in outcome ? { done: outcome.ended } : outcome;
  };
}
