import type { SparkConfig } from '@spark/config';
import { QueueName, REPORT_QUEUES } from '@spark/protocol';
import {
  bullmqRetryingInbox,
  connectRedis,
  lastStatusSeq,
  once,
  systemClock,
  openQueue,
  redactRedisUrl,
  redisLogin,
  redisReady,
  runCloseSteps,
  type Logger,
  type RetryingInbox,
} from '@spark/service';
import type { UploaderReports } from './upload-job.js';
import { createUploader, type Uploader, type UploaderDeps } from './uploader.js';
import { redisUploadRecords, type UploadRecords } from './upload-records.js';

/*
 * A killed uploader's job is picked up again once its lock expires: a short
 * lock (renewed every lockDuration/2 while a file streams) makes a restart
 * resume within seconds; a few stalls are tolerated since each resume skips
 * what is done.
 */
const UPLOADER_LOCKS = { lockDuration: 10_000, stalledInterval: 5_000, maxStalledCount: 5 };

/** The uploader's queues and records on Redis, as `createUploader` takes them. */
export interface UploaderRedis {
  uploadJobs: RetryingInbox;
  reports: UploaderReports;
  records: UploadRecords;
  /** Resolves once Redis answers. */
  ready(): Promise<void>;
  /** Closes the queues and the connections; call it after the uploader's `close`. */
  close(): Promise<void>;
}

/** Opens the uploader's connections to Redis (as the `uploader` user when credentials are set up) and its queues. */
export function openUploaderRedis(
  config: Pick<SparkConfig, 'redisUrl' | 'queuePrefix'> & Partial<Pick<SparkConfig, 'redisCredentialsDir'>>,
  logger: Logger,
): UploaderRedis {
  const login = redisLogin(config.redisCredentialsDir, 'uploader');
  const workerRedis = connectRedis(config.redisUrl, 'worker', login);
  const redis = connectRedis(config.redisUrl, 'worker', login);
  for (const connection of [workerRedis, redis]) {
    connection.on('error', (err) => logger.warn({ err }, `Redis ${redactRedisUrl(config.redisUrl)}: ${err.message}; reconnecting`));
  }
  const reportQueue = openQueue(REPORT_QUEUES.uploader, redis, config.queuePrefix, logger);
  const uploadJobs = bullmqRetryingInbox(QueueName.upload, workerRedis, config.queuePrefix, logger, UPLOADER_LOCKS);
  return {
    uploadJobs,
    reports: {
      add: (name, data, options) => reportQueue.add(name, data, options),
      lastStatusSeq: (round) => lastStatusSeq(reportQueue, round),
    },
    records: redisUploadRecords(redis, config.queuePrefix),
    ready: () => redisReady(redis),
    async close() {
      await runCloseSteps(
        [
          ['stop taking jobs and finish the one in flight', () => uploadJobs.close()],
          [`close the ${REPORT_QUEUES.uploader} queue`, () => reportQueue.close()],
          ['disconnect from Redis', () => Promise.all([redis.quit(), workerRedis.quit()])],
        ],
        logger,
      );
    },
  };
}

/**
 * The uploader as main.ts runs it: its queues and records on Redis, the wall
 * clock. Its `close` stops it, then closes the connections it opened.
 */
export function createUploaderOnRedis(config: SparkConfig, logger: Logger, options: Pick<UploaderDeps, 'retryDelayMs'> = {}): Uploader {
  const redis = openUploaderRedis(config, logger);
  const uploader = createUploader({
    config,
    logger,
    clock: systemClock,
    uploadJobs: redis.uploadJobs,
    reports: redis.reports,
    records: redis.records,
    ready: () => redis.ready(),
    ...options,
  });
  return {
    start: () => uploader.start(),
    close: once(() => uploader.close().then(() => redis.close())),
  };
}
