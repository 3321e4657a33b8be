import type { SparkConfig } from '@spark/config';
import { rm } from 'node:fs/promises';
import { exponentialBackoff, once, reportFailedJob, runCloseSteps, type Clock, type Logger, type RetryingInbox } from '@spark/service';
import { jobWorkspaceDir, QueueName } from '@spark/protocol';
import type { UploaderReports, UploadPolicy } from './upload-job.js';
import { createUploadHandler } from './upload-processor.js';
import type { UploadRecords } from './upload-records.js';

/**
 * What the uploader service needs. main.ts opens the queues and records on
 * Redis (uploader-redis.ts) and hands them over.
 */
export interface UploaderDeps {
  config: Pick<SparkConfig, 'workspacesDir' | 'uploader'>;
  logger: Logger;
  /** The `upload` queue. */
  uploadJobs: RetryingInbox;
  /** The uploader's report queue (`REPORT_QUEUES.uploader`). */
  reports: UploaderReports;
  records: UploadRecords;
  /** The time tries, deadlines and reports go by. */
  clock: Clock;
  /** Resolves once the queues and records can be reached (Redis is up). */
  ready(): Promise<void>;
  /** Override the pause between tries (tests); default 1 s doubling to 5 min. */
  retryDelayMs?: UploadPolicy['retryDelayMs'];
}

/** The uploader service. */
export interface Uploader {
  /** Waits for Redis and starts taking `upload` jobs. */
  start(): Promise<void>;
  /** Stops taking jobs and waits for the one in flight. Safe to call twice. The caller closes what it gave. */
  close(): Promise<void>;
}

/** Creates the uploader: the one handler of the `upload` queue. */
export function createUploader(deps: UploaderDeps): Uploader {
  const { config, logger } = deps;
  return {
    async start() {
      await deps.ready();
      const handle = createUploadHandler(
        {
          records: deps.records,
          reports: deps.reports,
          clock: deps.clock,
          workspacesDir: config.workspacesDir,
          policy: {
            timeouts: { connectMs: config.uploader.connectTimeoutMs, idleMs: config.uploader.idleTimeoutMs },
            giveUpAfterMs: config.uploader.giveUpAfterMs,
            retryDelayMs: deps.retryDelayMs ?? exponentialBackoff(),
          },
        },
        logger,
      );
      // A job the queue fails (killed more often than its maxStalledCount, an error no try turned into a
      // report) still ends at Lighthouse, reported failed; its files go.
      const failed = reportFailedJob(
        deps.reports,
        {
          outcome: 'failed',
          stage: 'uploader',
          cleanUp: (round) => rm(jobWorkspaceDir(config.workspacesDir, round), { recursive: true, force: true }),
        },
        logger,
        () => deps.clock.now(),
      );
      deps.uploadJobs.run(handle, failed);
      logger.info({ queue: QueueName.upload }, 'uploader started: taking upload jobs');
    },
    close: once(async () => {
      await runCloseSteps([['stop taking jobs and finish the one in flight', () => deps.uploadJobs.close()]], logger);
    }),
  };
}
