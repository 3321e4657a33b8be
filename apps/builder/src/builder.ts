import type { SparkConfig } from '@spark/config';
import { rm } from 'node:fs/promises';
import { builderControlMessageSchema, JOB_KINDS, jobWorkspaceDir, type JobKind } from '@spark/protocol';
import {
  once,
  reportFailedJob,
  runCloseSteps,
  type Clock,
  type JobOutbox,
  type LockedJob,
  type LockingInbox,
  type Logger,
} from '@spark/service';
import { detectDebspawnEnvironment, type DebspawnEnvironment } from './debspawn-command.js';
import { debspawnVersionOnce } from './debspawn-version.js';
import { builderId, startHeartbeat, type Heartbeat, type HeartbeatBoard } from './heartbeat.js';
import { runImageBuild } from './image-build.js';
import { JobStop } from './job-stop.js';
import { runPackageBuild } from './package-build.js';
import { processBuildJob, statusSeqBase, type BuildAttempt, type JobSummary, type Runner } from './process-job.js';
import type { RunnerContext } from './runner.js';

/**
 * Where operators' requests to the builders arrive (`spark cancel`): on
 * Redis, the builder control channel (builder-redis.ts).
 */
export interface ControlChannel {
  /** Hands every message that arrives from now on to `onMessage`, unchecked; resolves once listening. */
  listen(onMessage: (message: string) => void): Promise<void>;
}

/**
 * What the builder service is made of. main.ts opens the queues, the
 * heartbeat board and the control channel on Redis (builder-redis.ts); unit
 * tests give in-memory ones.
 */
export interface BuilderDeps {
  config: SparkConfig;
  logger: Logger;
  clock: Clock;
  /** The `build` queue. */
  buildJobs: LockingInbox;
  /** The `sign` queue, where a built round's artifacts are handed on. */
  signs: JobOutbox;
  /** The builder's report queue (`REPORT_QUEUES.builder`). */
  reports: JobOutbox;
  heartbeats: HeartbeatBoard;
  control: ControlChannel;
  /** Resolves once the queues can be reached (Redis is up). */
  ready(): Promise<void>;
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
   * `[builder] DrainTimeout`, then stops and rejects the rest; removes its
   * heartbeat. Safe to call twice. The caller closes what it gave.
   */
  close(): Promise<void>;
}

/** Creates the builder: `build` queue consumer, heartbeat and operator cancel channel. */
export function createBuilder(deps: BuilderDeps): Builder {
  const { config, logger, clock, buildJobs } = deps;
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

  const running = new Map<string, AbortController>();
  let accepting = true;
  let heartbeat: Heartbeat | null = null;

  const jobDeps = {
    workspacesDir: config.workspacesDir,
    logsDir: config.logsDir,
    architectures: config.architectures,
    runners,
    reportQueue: deps.reports,
    signQueue: deps.signs,
    logger,
    clock,
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

  const onControl = (message: string) => {
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
    const closing = buildJobs.close();
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
      ],
      logger,
    );
  });

  return {
    id,
    async start() {
      if (kinds.length === 0) throw new Error(`AcceptedJobs names no job kind this builder runs (${JOB_KINDS.join(', ')})`);
      await deps.ready();
      await deps.control.listen(onControl);
      heartbeat = startHeartbeat(
        deps.heartbeats,
        () => ({
          id,
          slots: config.maxJobs,
          busy: running.size,
          kinds,
          architectures: config.architectures,
          accepting,
          at: clock.now(),
        }),
        logger,
      );
      const handle = async (job: LockedJob): Promise<JobSummary> => {
        const onLockLost = () =>
          logger.warn({ queueJobId: job.id }, 'cannot renew the lock of a running job: stopping it; another builder may take it');
        job.lockLost.addEventListener('abort', onLockLost, { once: true });
        const attempt: BuildAttempt = {
          statusSeqBase: statusSeqBase(job.attemptsStarted),
          holdsLock: () => job.holdsLock(),
          lockLost: job.lockLost,
        };
        try {
          // processBuildJob registers the job as running before its first await.
          const summary = processBuildJob(job.data, jobDeps, running, attempt);
          void heartbeat?.beat();
          return await summary;
        } finally {
          job.lockLost.removeEventListener('abort', onLockLost);
          void heartbeat?.beat();
        }
      };
      buildJobs.run(
        handle,
        reportFailedJob(
          deps.reports,
          {
            outcome: 'rejected',
            stage: 'builder',
            cleanUp: (round) => rm(jobWorkspaceDir(config.workspacesDir, round), { recursive: true, force: true }),
          },
          logger,
          () => clock.now(),
        ),
        // A slot is free once the queue has moved the job on (the connector counts BullMQ's active jobs too).
        () => void heartbeat?.announce(),
      );
      logger.info({ id, kinds, architectures: config.architectures, slots: config.maxJobs, debspawn }, 'builder started');
    },
    close,
  };
}
