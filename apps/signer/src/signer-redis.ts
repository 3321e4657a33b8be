import type { SparkConfig } from '@spark/config';
import { QueueName, REPORT_QUEUES } from '@spark/protocol';
import {
  bullmqRetryingInbox,
  connectRedis,
  openQueue,
  redisLogin,
  redisReady,
  runCloseSteps,
  type JobOutbox,
  type Logger,
  type RetryingInbox,
} from '@spark/service';
import { redisSignerRecords, type SignerRecords } from './signer-records.js';

/*
 * A killed signer's job is picked up again once its lock expires (seconds,
 * with a short lock). A few kills are tolerated; a job that went through more
 * fails in BullMQ without reaching the signer's handler, and is then reported
 * failed so Lighthouse does not wait for it for ever.
 */
const SIGNER_LOCKS = { lockDuration: 10_000, stalledInterval: 5_000, maxStalledCount: 3 };

/** The signer's queues and records on Redis, as `createSigner` takes them. */
export interface SignerRedis {
  signJobs: RetryingInbox;
  uploads: JobOutbox;
  reports: JobOutbox;
  records: SignerRecords;
  /** Resolves once Redis answers. */
  ready(): Promise<void>;
  /** Closes the queues and the connections; call it after the signer's `close`. */
  close(): Promise<void>;
}

/** Opens the signer's connections to Redis (as the `signer` user when credentials are set up) and its queues. */
export function openSignerRedis(
  config: Pick<SparkConfig, 'redisUrl' | 'queuePrefix'> & Partial<Pick<SparkConfig, 'redisCredentialsDir'>>,
  logger: Logger,
): SignerRedis {
  const login = redisLogin(config.redisCredentialsDir, 'signer');
  const workerRedis = connectRedis(config.redisUrl, 'worker', login);
  // Hand-offs happen inside job processing: while Redis is away they must wait for it
  // (a 'worker' connection queues commands), not fail the job as a fail-fast producer would.
  const producerRedis = connectRedis(config.redisUrl, 'worker', login);
  const uploadQueue = openQueue(QueueName.upload, producerRedis, config.queuePrefix, logger);
  const reportQueue = openQueue(REPORT_QUEUES.signer, producerRedis, config.queuePrefix, logger);
  const signJobs = bullmqRetryingInbox(QueueName.sign, workerRedis, config.queuePrefix, logger, SIGNER_LOCKS);
  return {
    signJobs,
    uploads: uploadQueue,
    reports: reportQueue,
    records: redisSignerRecords(producerRedis, config.queuePrefix),
    ready: () => redisReady(producerRedis),
    async close() {
      await runCloseSteps(
        [
          ['stop taking sign jobs', () => signJobs.close()],
          ['close upload queue', () => uploadQueue.close()],
          [`close ${REPORT_QUEUES.signer} queue`, () => reportQueue.close()],
          ['close Redis', () => Promise.all([workerRedis.quit(), producerRedis.quit()])],
        ],
        logger,
      );
    },
  };
}
