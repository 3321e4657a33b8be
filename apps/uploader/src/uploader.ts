import type { Queue, Worker } from 'bullmq';
import type { SparkConfig } from '@spark/config';
import { rm } from 'node:fs/promises';
import {
  connectRedis,
  giveUpWhenFailed,
  lastStatusSeq,
  once,
  openQueue,
  openWorker,
  redactRedisUrl,
  redisLogin,
  redisReady,
  runCloseSteps,
  systemClock,
  type Clock,
  type Logger,
  type Redis,
} from '@spark/service';
import { jobWorkspaceDir, QueueName, REPORT_QUEUES } from '@spark/protocol';
import { exponentialBackoff, type UploadPolicy } from './upload-job.js';
import { createUploadProcessor } from './upload-processor.js';
import { redisUploadRecords } from './upload-records.js';

/** What the uploader service needs. */
export interface UploaderDeps {
  config: SparkConfig;
  logger: Logger;
  /** Override the pause between tries (tests); default 5 s doubling to 5 min. */
  retryDelayMs?: UploadPolicy['retryDelayMs'];
  /** The time tries, deadlines and reports go by; the wall clock by default. */
  clock?: Clock;
}

/** The uploader service. */
export interface Uploader {
  /** Connects to Redis and starts taking `upload` jobs. */
  start(): Promise<void>;
  /** Stops taking jobs, waits for the one in flight, closes the queue and Redis. Safe to call twice. */
  close(): Promise<void>;
}

/*
 * A killed uploader's job is picked up again once its lock expires: a short
 * lock (renewed every lockDuration/2 while a file streams) makes a restart
 * resume within seconds; a few stalls are tolerated since each resume skips
 * what is done.
 */
const LOCK_DURATION_MS = 10_000;
const STALLED_INTERVAL_MS = 5_000;
const MAX_STALLED_COUNT = 5;

/** Creates the uploader: the one handler of the `upload` queue. */
export function createUploader(deps: UploaderDeps): Uploader {
  const { config, logger } = deps;
  let workerRedis: Redis | null = null;
  let redis: Redis | null = null;
  let reports: Queue | null = null;
  let worker: Worker | null = null;
  return {
    async start() {
      const login = redisLogin(config.redisCredentialsDir, 'uploader');
      workerRedis = connectRedis(config.redisUrl, 'worker', login);
      redis = connectRedis(config.redisUrl, 'worker', login);
      for (const connection of [workerRedis, redis]) {
        connection.on('error', (err) => logger.warn({ err }, `Redis ${redactRedisUrl(config.redisUrl)}: ${err.message}; reconnecting`));
      }
      await redisReady(redis);
      const queue = openQueue(REPORT_QUEUES.uploader, redis, config.queuePrefix, logger);
      reports = queue;
      const processor = createUploadProcessor(
        {
          records: redisUploadRecords(redis, config.queuePrefix),
          reports: { add: (name, data, options) => queue.add(name, data, options), lastStatusSeq: (round) => lastStatusSeq(queue, round) },
          clock: deps.clock ?? systemClock,
          workspacesDir: config.workspacesDir,
          policy: {
            timeouts: { connectMs: config.uploader.connectTimeoutMs, idleMs: config.uploader.idleTimeoutMs },
            giveUpAfterMs: config.uploader.giveUpAfterMs,
            retryDelayMs: deps.retryDelayMs ?? exponentialBackoff(),
          },
        },
        logger,
      );
      worker = openWorker(QueueName.upload, processor, workerRedis, config.queuePrefix, logger, {
        concurrency: 1,
        lockDuration: LOCK_DURATION_MS,
        stalledInterval: STALLED_INTERVAL_MS,
        maxStalledCount: MAX_STALLED_COUNT,
      });
      // A job BullMQ fails (killed more often than MAX_STALLED_COUNT, an error no try turned into a
      // report) still ends at Lighthouse, reported failed; its files go.
      giveUpWhenFailed(
        worker,
        reports,
        {
          outcome: 'failed',
          stage: 'uploader',
          cleanUp: (round) => rm(jobWorkspaceDir(config.workspacesDir, round), { recursive: true, force: true }),
        },
        logger,
      );
      logger.info({ queue: QueueName.upload }, 'uploader started: taking upload jobs');
    },
    close: once(async () => {
      await runCloseSteps(
        [
          ['stop taking jobs and finish the one in flight', () => worker?.close()],
          [`close the ${REPORT_QUEUES.uploader} queue`, () => reports?.close()],
          ['disconnect from Redis', () => Promise.all([redis?.quit(), workerRedis?.quit()])],
        ],
        logger,
      );
    }),
  };
}
