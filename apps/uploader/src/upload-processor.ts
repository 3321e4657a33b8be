import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from '@spark/service';
import { stageJobId, uploadPayloadSchema, type UploadOutcome } from '@spark/protocol';
import { uploadJob, type UploadJobDeps } from './upload-job.js';

/**
 * The handler of the `upload` queue: validates the payload, then makes one
 * try at the upload (`uploadJob`). A try that fails moves the job to
 * `delayed` until its next try, so one failing upload does not hold up the
 * others; the job ends (completed, with an {@link UploadOutcome}) once the
 * round is reported to Lighthouse, uploaded or given up.
 */
export function createUploadProcessor(deps: UploadJobDeps, logger: Logger): (job: Job, token?: string) => Promise<UploadOutcome> {
  return async (job, token) => {
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
    const outcome = await uploadJob(manifest, deps, log, (state) => job.updateProgress(state));
    if ('ended' in outcome) return outcome.ended;
    await job.moveToDelayed(outcome.retryAt, token);
    throw new DelayedError();
  };
}
