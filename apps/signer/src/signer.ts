import { UnrecoverableError, type Job, type Worker } from 'bullmq';
import type { SparkConfig } from '@spark/config';
import {
  archiveTargetsKey,
  JOB_RECORD_TTL_S,
  parseJobId,
  QueueName,
  REPORT_QUEUES,
  signerRoundKey,
  signPayloadSchema,
  stageJobId,
  storedArchiveTargetsSchema,
  type Manifest,
  type UploadPayload,
} from '@spark/protocol';
import {
  connectRedis,
  giveUp,
  giveUpWhenFailed,
  once,
  readJobRecord,
  redisLogin,
  openQueue,
  openWorker,
  redisReady,
  runCloseSteps,
  type Logger,
  type Redis,
} from '@spark/service';
import { ArtifactError } from './artifact-error.js';
import type { AuditLog } from './audit-log.js';
import { auditJob, signArtifacts, type SignDeps, type SignOrigin } from './sign-artifacts.js';
import type { SigningKey } from '@spark/keys/signing-key';

/** What the signer service is made of. */
export interface SignerDeps {
  config: Pick<SparkConfig, 'redisUrl' | 'queuePrefix' | 'workspacesDir'> & Partial<Pick<SparkConfig, 'redisCredentialsDir'>>;
  logger: Logger;
  signingKey: SigningKey;
  audit: AuditLog;
  /** Test hook, see {@link SignDeps.afterChecks}. */
  afterChecks?: SignDeps['afterChecks'];
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

/** `<method>://<fqdn>` of `repo` from the stored `archive-info`, or null when there is none. */
async function uploadTargetOf(redis: Redis, prefix: string, repo: string): Promise<string | null> {
  const text = await redis.get(archiveTargetsKey(prefix));
  if (text === null) return null;
  try {
    const target = storedArchiveTargetsSchema.parse(JSON.parse(text)).archive_repos[repo];
    return target ? `${target.upload_method}://${target.upload_fqdn}` : null;
  } catch {
    return null;
  }
}

/**
 * The signer stage: takes `sign` jobs, checks them against the job record the
 * connector wrote and verifies the job's files (see `signArtifacts`), signs
 * them, and adds the round's `upload` job with the signed manifest. A job that
 * fails a check is reported `failed` (in the signer's report queue) with the
 * reason, gets an audit line, and fails without retries, nothing signed.
 */
export function createSigner(deps: SignerDeps): Signer {
  const { config, logger } = deps;
  const login = redisLogin(config.redisCredentialsDir, 'signer');
  const workerRedis = connectRedis(config.redisUrl, 'worker', login);
  // Hand-offs happen inside job processing: while Redis is away they must wait for it
  // (a 'worker' connection queues commands), not fail the job as a fail-fast producer would.
  const producerRedis = connectRedis(config.redisUrl, 'worker', login);
  const uploadQueue = openQueue(QueueName.upload, producerRedis, config.queuePrefix, logger);
  const reportQueue = openQueue(REPORT_QUEUES.signer, producerRedis, config.queuePrefix, logger);
  let worker: Worker | null = null;

  /**
   * Writes the refusal to the audit log, reports the round failed (once: the
   * report id is fixed per round) and fails the queue job without retries.
   */
  const fail = async (
    jobId: string | undefined,
    reason: string,
    origin: SignOrigin = { record: null, uploadTarget: null },
  ): Promise<never> => {
    const round = parseJobId(jobId);
    // A queue job id that names no round is still written down, as far as it goes.
    const job = auditJob(round ?? { uuid: String(jobId ?? '').slice(0, 200), round: '' }, origin);
    await deps.audit.append({ event: 'refused', time: new Date().toISOString(), ...job, reason });
    if (round) await giveUp(reportQueue, round, 'failed', reason, logger);
    else logger.error({ queueJobId: jobId }, `${reason}; the sign job names no job to report it by`);
    throw new UnrecoverableError(reason);
  };

  const handle = async (job: Job): Promise<void> => {
    const taken = parseJobId(job.id);
    if (taken?.type === 'stage') {
      // The round is the signer's from here: the relay takes no rejection of it from the builder any more.
      await producerRedis.set(signerRoundKey(config.queuePrefix, taken.uuid), taken.round, 'EX', JOB_RECORD_TTL_S);
    }
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
    const record = await readJobRecord(producerRedis, config.queuePrefix, manifest.uuid);
    const origin: SignOrigin = {
      record,
      uploadTarget: await uploadTargetOf(producerRedis, config.queuePrefix, record?.repo ?? manifest.repo),
    };
    let signed: Manifest;
    try {
      signed = await signArtifacts(
        { workspacesDir: config.workspacesDir, signingKey: deps.signingKey, audit: deps.audit, afterChecks: deps.afterChecks },
        manifest,
        origin,
      );
    } catch (error) {
      if (!(error instanceof ArtifactError)) throw error;
      log.warn({ file: error.file, reason: error.reason }, `refused to sign: ${error.message}`);
      return fail(job.id, `signer refused the build results, nothing was signed: ${error.message}`, origin);
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
          [`close ${REPORT_QUEUES.signer} queue`, () => reportQueue.close()],
          ['close Redis', () => Promise.all([workerRedis.quit(), producerRedis.quit()])],
        ],
        logger,
      );
    }),
  };
}
