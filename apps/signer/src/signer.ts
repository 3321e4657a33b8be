import { UnrecoverableError } from 'bullmq';
import type { SparkConfig } from '@spark/config';
import {
  parseJobId,
  QueueName,
  signPayloadSchema,
  signStateSchema,
  stageJobId,
  type Manifest,
  type SignState,
  type UploadPayload,
} from '@spark/protocol';
import {
  exponentialBackoff,
  giveUp,
  once,
  reportFailedJob,
  runCloseSteps,
  type Clock,
  type JobOutbox,
  type Logger,
  type JobTry,
  type RetryingInbox,
  type TakenJob,
} from '@spark/service';
import { ArtifactError } from './artifact-error.js';
import type { AuditLog } from './audit-log.js';
import { auditJob, signArtifacts, type SignDeps, type SignOrigin } from './sign-artifacts.js';
import type { SignerRecords } from './signer-records.js';
import type { SigningKey } from '@spark/keys/signing-key';

/**
 * What the signer service is made of. main.ts opens the queues and the records
 * on Redis (signer-redis.ts); unit tests give in-memory ones.
 */
export interface SignerDeps {
  config: Pick<SparkConfig, 'workspacesDir'>;
  logger: Logger;
  signingKey: SigningKey;
  audit: AuditLog;
  /** The `sign` queue; a job is tried again later while the workspace disk is full. */
  signJobs: RetryingInbox;
  /** The `upload` queue, where a signed round is handed on. */
  uploads: JobOutbox;
  /** The signer's report queue (`REPORT_QUEUES.signer`). */
  reports: JobOutbox;
  records: SignerRecords;
  clock: Clock;
  /** Resolves once the queues and records can be reached (Redis is up). */
  ready(): Promise<void>;
  /** Test hook, see {@link SignDeps.afterChecks}. */
  afterChecks?: SignDeps['afterChecks'];
}

/**
 * How long a round waits for space on a full workspace disk before it is
 * reported failed, counted from the first try that found the disk full.
 */
export const DISK_FULL_GIVE_UP_MS = 6 * 3600_000;

/** Waits between tries on a full disk: 5 s, 10 s, 20 s … 5 min. */
const diskFullDelay = exponentialBackoff(5_000, 300_000);

/** The error of a write that found no space left: the disk or the user's quota is full. */
function isDiskFull(error: unknown): error is NodeJS.ErrnoException {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The running signer. */
export interface Signer {
  /** Waits for Redis, then starts taking `sign` jobs. */
  start(): Promise<void>;
  /** Stops taking jobs and waits for the one in flight. Safe to call twice. The caller closes what it gave. */
  close: () => Promise<void>;
}

/**
 * The signer stage: takes `sign` jobs, checks them against the job record the
 * connector wrote and verifies the job's files (see `signArtifacts`), signs
 * them, and adds the round's `upload` job with the signed manifest. A job that
 * fails a check is reported `failed` (in the signer's report queue) with the
 * reason, gets an audit line, and fails without retries, nothing signed. A job
 * whose signed files find the workspace disk full waits and is tried again
 * with backoff (the build's results are kept, nothing half-written is left),
 * and is reported failed only once the disk stayed full for
 * {@link DISK_FULL_GIVE_UP_MS}.
 */
export function createSigner(deps: SignerDeps): Signer {
  const { config, logger, clock, records } = deps;

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
    await deps.audit.append({ event: 'refused', time: new Date(clock.now()).toISOString(), ...job, reason });
    if (round) await giveUp(deps.reports, round, 'failed', reason, logger, { at: clock.now() });
    else logger.error({ queueJobId: jobId }, `${reason}; the sign job names no job to report it by`);
    throw new UnrecoverableError(reason);
  };

  /** Another try later, or the round failed once the disk stayed full too long. */
  const waitForSpace = async (
    job: TakenJob,
    error: NodeJS.ErrnoException,
    setProgress: (progress: object) => Promise<void>,
    log: Logger,
  ): Promise<JobTry> => {
    const now = clock.now();
    const earlier = signStateSchema.safeParse(job.progress);
    const since = earlier.success ? earlier.data.since : now;
    const tries = (earlier.success ? earlier.data.tries : 0) + 1;
    const problem = `the workspace disk is full (${error.message})`;
    if (now - since >= DISK_FULL_GIVE_UP_MS) {
      return fail(
        job.id,
        `signer could not write the signed files: ${problem}, and it stayed full for ${DISK_FULL_GIVE_UP_MS / 3600_000} h since the first try; the build's files were left as they were`,
      );
    }
    const retryAt = now + diskFullDelay(tries);
    // What `spark status` shows of the job while it waits.
    await setProgress({
      phase: 'disk-full',
      problem,
      tries,
      since,
      nextTryAt: retryAt,
      giveUpAt: since + DISK_FULL_GIVE_UP_MS,
    } satisfies SignState);
    log.warn(
      { err: error, try: tries, retryAt },
      `cannot sign yet: ${problem}; the job waits, next try at ${new Date(retryAt).toISOString()}`,
    );
    return { retryAt };
  };

  const handle = async (job: TakenJob, setProgress: (progress: object) => Promise<void>): Promise<JobTry> => {
    const taken = parseJobId(job.id);
    // The round is the signer's from here: the relay takes no rejection of it from the builder any more.
    if (taken?.type === 'stage') await records.takeRound(taken);
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
    const record = await records.read(manifest.uuid);
    const origin: SignOrigin = { record, uploadTarget: await records.uploadTarget(record?.repo ?? manifest.repo) };
    let signed: Manifest;
    try {
      signed = await signArtifacts(
        { workspacesDir: config.workspacesDir, signingKey: deps.signingKey, audit: deps.audit, clock, afterChecks: deps.afterChecks },
        manifest,
        origin,
      );
    } catch (error) {
      if (isDiskFull(error)) return waitForSpace(job, error, setProgress, log);
      if (!(error instanceof ArtifactError)) throw error;
      log.warn({ file: error.file, reason: error.reason }, `refused to sign: ${error.message}`);
      return fail(job.id, `signer refused the build results, nothing was signed: ${error.message}`, origin);
    }
    await deps.uploads.add(QueueName.upload, { manifest: signed } satisfies UploadPayload, { jobId: stageJobId(manifest, 'upload') });
    log.info({ files: signed.files.length, changes: signed.changes, dud: signed.dud }, 'signed; handed to upload');
    return { done: undefined };
  };

  return {
    async start() {
      await deps.ready();
      // The signer's own refusals have reported already (same report id); the failed-job report catches the rest.
      deps.signJobs.run(
        handle,
        reportFailedJob(deps.reports, { outcome: 'failed', stage: 'signer' }, logger, () => clock.now()),
      );
      logger.info({ fingerprint: deps.signingKey.fingerprint }, 'taking sign jobs');
    },
    close: once(async () => {
      await runCloseSteps([['stop taking sign jobs', () => deps.signJobs.close()]], logger);
    }),
  };
}
