import type { Worker } from 'bullmq';
import type { SparkConfig } from '@spark/config';
import { rm } from 'node:fs/promises';
import {
  builderControlChannel,
  builderControlMessageSchema,
  JOB_KINDS,
  jobWorkspaceDir,
  QueueName,
  REPORT_QUEUES,
  type JobKind,
} from '@spark/protocol';
import {
  connectRedis,
  redisLogin,
  giveUpWhenFailed,
  KEEP_COMPLETED,
  once,
  openQueue,
  openWorker,
  redisReady,
  runCloseSteps,
  type Logger,
  type Redis,
} from '@spark/service';
import { detectDebspawnEnvironment, type DebspawnEnvironment } from './debspawn-command.js';
import { debspawnVersionOnce } from './debspawn-version.js';
import { builderId, startHeartbeat, type Heartbeat } from './heartbeat.js';
import { runImageBuild } from './image-build.js';
import { JobStop } from './job-stop.js';
import { runPackageBuild } from './package-build.js';
import { processBuildJob, statusSeqBase, type BuildAttempt, type JobSummary, type Runner } from './process-job.js';
import type { RunnerContext } from './runner.js';

/** What a builder needs besides its config. */
export interface BuilderDeps {
  config: SparkConfig;
  logger: Logger;
  /** How debspawn is run (default: detected from the host). */
  debspawn?: DebspawnEnvironment;
  /** ms between SIGTERM and SIGKILL when a build is stopped (default 10 s). */
  killGraceMs?: number;
  /** Heartbeat id (default: `SPARK_BUILDER_ID` or `<hostname>:<pid>`). */
  id?: string;
}

/** A builder service. */
export interface Builder {
  readonly id: string;
  /** Connects, starts the heartbeat and takes jobs. */
  start(): Promise<void>;
  /**
   * Drains: takes no new jobs, lets running ones finish for up to
   * `[builder] DrainTimeout`, then stops and rejects the rest; closes
   * everything. Safe to call twice.
   */
  close(): Promise<void>;
}

/*
 * A killed builder's job is picked up again once its lock expires: a short
 * lock (renewed every lockDuration/2 while the build runs) lets a restarted
 * builder resume it within seconds instead of a minute. A few kills are
 * tolerated — a crashed host is rarely the job's fault — and a job that went
 * through more is rejected back to Lighthouse (see giveUpWhenFailed).
 */
const LOCK_DURATION_MS = 10_000;
const STALLED_INTERVAL_MS = 5_000;
const MAX_STALLED_COUNT = 3;

/** Creates the builder: `build` queue consumer, heartbeat and operator cancel channel. */
export function createBuilder(deps: BuilderDeps): Builder {
  const { config, logger } = deps;
  const settings = config.builder;
  const id = deps.id ?? builderId();
  const debspawn = deps.debspawn ?? detectDebspawnEnvironment(settings.debspawn);
  const debspawnVersion = debspawnVersionOnce(debspawn);
  const kinds = JOB_KINDS.filter((kind) => config.acceptedJobs.includes(kind));
  const runners: Partial<Record<JobKind, Runner>> = {};
  if (kinds.includes('package-build')) {
    runners['package-build'] = (ctx) =>
      runPackageBuild(ctx as RunnerContext<Extract<typeof ctx.job, { kind: 'package-build' }>>, debspawnVersion);
  }
  if (kinds.includes('os-image-build')) {
    runners['os-image-build'] = (ctx) => runImageBuild(ctx as RunnerContext<Extract<typeof ctx.job, { kind: 'os-image-build' }>>);
  }

  const login = redisLogin(config.redisCredentialsDir, 'builder');
  const workerRedis: Redis = connectRedis(config.redisUrl, 'worker', login);
  // Hand-offs happen inside job processing: while Redis is away they must wait for it
  // (a 'worker' connection queues commands), not fail the job as a fail-fast producer would.
  const producerRedis: Redis = connectRedis(config.redisUrl, 'worker', login);
  const controlRedis: Redis = connectRedis(config.redisUrl, 'worker', login);
  for (const redis of [workerRedis, producerRedis, controlRedis]) {
    redis.on('error', (err) => logger.warn({ err }, 'Redis connection error; reconnecting'));
  }
  const reportQueue = openQueue(REPORT_QUEUES.builder, producerRedis, config.queuePrefix, logger);
  const signQueue = openQueue(QueueName.sign, producerRedis, config.queuePrefix, logger);
  const running = new Map<string, AbortController>();
  // Per BullMQ job id: aborted when the job's lock could not be renewed.
  const lockWatch = new Map<string, AbortController>();
  let accepting = true;
  let worker: Worker | null = null;
  let heartbeat: Heartbeat | null = null;

  const jobDeps = {
    workspacesDir: config.workspacesDir,
    logsDir: config.logsDir,
    architectures: config.architectures,
    runners,
    reportQueue,
    signQueue,
    logger,
    statusIntervalMs: settings.statusIntervalMs,
    maxBuildTimeMs: settings.maxBuildTimeMs,
    maxLogBytes: settings.maxLogBytes,
    runnerSettings: {
      debspawn,
      idleOutputTimeoutMs: settings.idleOutputTimeoutMs,
      killGraceMs: deps.killGraceMs ?? 10_000,
      downloadTimeouts: { connectMs: settings.downloadConnectTimeoutMs, idleMs: settings.downloadIdleTimeoutMs },
      allowFileUrls: settings.allowFileUrls,
    },
  };

  const onControl = (channel: string, message: string) => {
    if (channel !== builderControlChannel(config.queuePrefix)) return;
    let parsed;
    try {
      parsed = builderControlMessageSchema.safeParse(JSON.parse(message));
    } catch {
      parsed = null;
    }
    if (!parsed?.success) {
      logger.warn('ignoring a malformed builder control message');
      return;
    }
    const stopper = running.get(parsed.data.uuid.toLowerCase());
    if (!stopper) return;
    logger.info({ jobId: parsed.data.uuid }, 'cancelling job on operator request');
    stopper.abort(new JobStop('cancelled', `cancelled by operator: ${parsed.data.reason}`));
  };

  const close = once(async () => {
    accepting = false;
    await heartbeat?.beat();
    const closing = worker?.close() ?? Promise.resolve();
    if (running.size > 0) {
      logger.info({ running: running.size, drainTimeoutMs: settings.drainTimeoutMs }, 'draining: waiting for running jobs');
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        closing.then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), settings.drainTimeoutMs))),
      ]);
      clearTimeout(timer);
      if (!drained) {
        logger.warn({ running: [...running.keys()] }, 'drain time is up: stopping and rejecting the jobs still running');
        for (const stopper of running.values()) stopper.abort(new JobStop('draining', 'the builder is shutting down'));
      }
    }
    await runCloseSteps(
      [
        ['build worker', () => closing],
        ['heartbeat', () => heartbeat?.stop()],
        ['control channel', () => controlRedis.quit()],
        [`${REPORT_QUEUES.builder} queue`, () => reportQueue.close()],
        ['sign queue', () => signQueue.close()],
        ['worker Redis', () => workerRedis.quit()],
        ['producer Redis', () => producerRedis.quit()],
      ],
      logger,
    );
  });

  return {
    id,
    async start() {
      if (kinds.length === 0) throw new Error(`AcceptedJobs names no job kind this builder runs (${JOB_KINDS.join(', ')})`);
      await redisReady(producerRedis);
      controlRedis.on('message', onControl);
      await controlRedis.subscribe(builderControlChannel(config.queuePrefix));
      heartbeat = startHeartbeat(
        producerRedis,
        config.queuePrefix,
        () => ({
          id,
          slots: config.maxJobs,
          busy: running.size,
          kinds,
          architectures: config.architectures,
          accepting,
          at: Date.now(),
        }),
        logger,
      );
      worker = openWorker<unknown>(
        QueueName.build,
        async (job, token): Promise<JobSummary> => {
          const jobId = job.id ?? '';
          const lockLost = new AbortController();
          lockWatch.set(jobId, lockLost);
          const attempt: BuildAttempt = {
            statusSeqBase: statusSeqBase(job.attemptsStarted),
            holdsLock: async () => token !== undefined && (await job.extendLock(token, LOCK_DURATION_MS)) === 1,
            lockLost: lockLost.signal,
          };
          try {
            // processBuildJob registers the job as running before its first await.
            const summary = processBuildJob(job.data, jobDeps, running, attempt);
            void heartbeat?.beat();
            return await summary;
          } finally {
            // A later attempt at the same job (its lock lost here) may have registered its own watch meanwhile.
            if (lockWatch.get(jobId) === lockLost) lockWatch.delete(jobId);
            void heartbeat?.beat();
          }
        },
        workerRedis,
        config.queuePrefix,
        logger,
        {
          concurrency: config.maxJobs,
          removeOnComplete: KEEP_COMPLETED,
          lockDuration: LOCK_DURATION_MS,
          stalledInterval: STALLED_INTERVAL_MS,
          maxStalledCount: MAX_STALLED_COUNT,
        },
      );
      // A slot is free once BullMQ has moved the job on (the connector counts BullMQ's active jobs too).
      worker.on('completed', () => void heartbeat?.announce());
      worker.on('failed', () => void heartbeat?.announce());
      giveUpWhenFailed(
        worker,
        reportQueue,
        {
          outcome: 'rejected',
          stage: 'builder',
          cleanUp: (round) => rm(jobWorkspaceDir(config.workspacesDir, round), { recursive: true, force: true }),
        },
        logger,
      );
      worker.on('lockRenewalFailed', (jobIds: string[]) => {
        for (const jobId of jobIds) {
          const lockLost = lockWatch.get(jobId);
          if (!lockLost || lockLost.signal.aborted) continue;
          logger.warn({ queueJobId: jobId }, 'cannot renew the lock of a running job: stopping it; another builder may take it');
          lockLost.abort();
        }
      });
      logger.info({ id, kinds, architectures: config.architectures, slots: config.maxJobs, debspawn }, 'builder started');
    },
    close,
  };
}
