import { UnrecoverableError, type Job, type Worker } from 'bullmq';
import type { SparkConfig } from '@spark/config';
import { parseJobId, QueueName, signPayloadSchema, stageJobId, type Manifest, type UploadPayload } from '@spark/protocol';
import {
  connectRedis,
  giveUp,
  giveUpWhenFailed,
  once,
  openQueue,
  openWorker,
  redisReady,
  runCloseSteps,
  type Logger,
} from '@spark/service';
import { ArtifactError } from './artifact-error.js';
import type { AuditLog } from './audit-log.js';
import { signArtifacts } from './sign-artifacts.js';
import type { SigningKey } from './signing-key.js';

/** What the signer service is made of. */
export interface SignerDeps {
  config: Pick<SparkConfig, 'redisUrl' | 'queuePrefix' | 'workspacesDir'>;
  logger: Logger;
  signingKey: SigningKey;
  audit: AuditLog;
}

/** The running signer. */
export interface Signer {
  /** Waits for Redis, then starts taking `sign` jobs. */
  start(): Promise<void>;
  /** Stops taking jobs, waits for the one in flight, closes queues and Redis. Safe to call twice. */
  close: () => Promise<void>;
}

/*
 * A killed signer's job is picked up again once its lock expires (seconds,
 * with a short lock). A few kills are tolerated; a job that went through more
 * fails in BullMQ without reaching `handle`, and is then reported failed so
 * Lighthouse does not wait for it for ever.
 */
const LOCK_DURATION_MS = 10_000;
const STALLED_INTERVAL_MS = 5_000;
const MAX_STALLED_COUNT = 3;

/**
 * The signer stage: takes `sign` jobs, verifies and signs the job's files
 * (see `signArtifacts`), and adds the round's `upload` job with the signed
 * manifest. A job whose files fail verification is reported
 * `failed` to `report` and fails without retries, nothing signed.
 */
export function createSigner(deps: SignerDeps): Signer {
  const { config, logger } = deps;
  const workerRedis = connectRedis(config.redisUrl, 'worker');
  // Hand-offs happen inside job processing: while Redis is away they must wait for it
  // (a 'worker' connection queues commands), not fail the job as a fail-fast producer would.
  const producerRedis = connectRedis(config.redisUrl, 'worker');
  const uploadQueue = openQueue(QueueName.upload, producerRedis, config.queuePrefix, logger);
  const reportQueue = openQueue(QueueName.report, producerRedis, config.queuePrefix, logger);
  let worker: Worker | null = null;

  /** Reports the round failed (once: the report id is fixed per round) and fails the queue job without retries. */
  const fail = async (jobId: string | undefined, reason: string): Promise<never> => {
    const round = parseJobId(jobId);
    if (round) await giveUp(reportQueue, round, 'failed', reason, logger);
    else logger.error({ queueJobId: jobId }, `${reason}; the sign job names no job to report it by`);
    throw new UnrecoverableError(reason);
  };

  const handle = async (job: Job): Promise<void> => {
    const parsed = signPayloadSchema.safeParse(job.data);
    if (!parsed.success) {
      return fail(
        job.id,
        `signer refused the sign job: invalid payload: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`,
      );
    }
    const { manifest } = parsed.data;
    const id = parseJobId(job.id);
    if (id?.uuid !== manifest.uuid || id.round !== manifest.round) {
      return fail(
        job.id,
        `signer refused the sign job: its manifest is for ${manifest.uuid}.${manifest.round}, not for the job it was queued as`,
      );
    }
    const log = logger.child({ jobId: manifest.uuid, round: manifest.round });
    let signed: Manifest;
    try {
      signed = await signArtifacts({ workspacesDir: config.workspacesDir, signingKey: deps.signingKey, audit: deps.audit }, manifest);
    } catch (error) {
      if (!(error instanceof ArtifactError)) throw error;
      log.warn({ file: error.file, reason: error.reason }, `refused to sign: ${error.message}`);
      return fail(job.id, `signer refused the build results, nothing was signed: ${error.message}`);
    }
    await uploadQueue.add(QueueName.upload, { manifest: signed } satisfies UploadPayload, { jobId: stageJobId(manifest, 'upload') });
    log.info({ files: signed.files.length, changes: signed.changes, dud: signed.dud }, 'signed; handed to upload');
  };

  return {
    async start() {
      await redisReady(producerRedis);
      worker = openWorker(QueueName.sign, handle, workerRedis, config.queuePrefix, logger, {
        concurrency: 1,
        lockDuration: LOCK_DURATION_MS,
        stalledInterval: STALLED_INTERVAL_MS,
        maxStalledCount: MAX_STALLED_COUNT,
      });
      // The signer's own refusals have reported already (same report id); this catches the rest.
      giveUpWhenFailed(worker, reportQueue, { outcome: 'failed', stage: 'signer' }, logger);
      logger.info({ fingerprint: deps.signingKey.fingerprint }, 'taking sign jobs');
    },
    close: once(async () => {
      await runCloseSteps(
        [
          ['stop taking sign jobs', () => worker?.close()],
          ['close upload queue', () => uploadQueue.close()],
          ['close report queue', () => reportQueue.close()],
          ['close Redis', () => Promise.all([workerRedis.quit(), producerRedis.quit()])],
        ],
        logger,
      );
    }),
  };
}
