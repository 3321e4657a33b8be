import type { Queue } from 'bullmq';
import type { SparkConfig } from '@spark/config';
import { QueueName, REPORT_QUEUES, REPORT_SENDERS, type ReportSender } from '@spark/protocol';
import {
  bullmqSettledFeed,
  bullmqWatchedQueue,
  connectRedis,
  once,
  openQueue,
  openQueueEvents,
  redisLogin,
  redisReady,
  runCloseSteps,
  type Logger,
} from '@spark/service';
import { redisBuilderBoard } from './builder-capacity.js';
import { systemClock } from './clock.js';
import { createConnector, type Connector, type ConnectorDeps } from './connector.js';
import { redisConnectorLock } from './connector-lock.js';
import { redisKindBlocks } from './kind-blocks.js';
import { redisLighthouseNotes } from './lighthouse-notes.js';
import { redisJobRecords } from './relay-records.js';
import { bullmqReportInbox, type ReportInbox } from './report-inbox.js';

/** The parts of {@link ConnectorDeps} that live in Redis. */
export type ConnectorRedisParts = Pick<
  ConnectorDeps,
  | 'buildQueue'
  | 'signQueue'
  | 'uploadQueue'
  | 'uploadsSettled'
  | 'reports'
  | 'inboxes'
  | 'records'
  | 'builders'
  | 'kindBlocks'
  | 'notes'
  | 'lock'
  | 'ready'
>;

/** The connector's queues and records on Redis, as `createConnector` takes them. */
export interface ConnectorRedis extends ConnectorRedisParts {
  /** Closes the queues and the connections; call it after the connector's `close`. */
  close(): Promise<void>;
}

/** Opens the connector's connections to Redis (as the `connector` user when credentials are set up), its queues and records. */
export function openConnectorRedis(
  config: Pick<SparkConfig, 'redisUrl' | 'queuePrefix'> & Partial<Pick<SparkConfig, 'redisCredentialsDir'>>,
  logger: Logger,
): ConnectorRedis {
  const prefix = config.queuePrefix;
  // A job Lighthouse handed out must reach the build queue even if Redis is restarting:
  // these connections wait for Redis (queue commands) rather than failing fast.
  const login = redisLogin(config.redisCredentialsDir, 'connector');
  const producer = connectRedis(config.redisUrl, 'worker', login);
  const workerConnection = connectRedis(config.redisUrl, 'worker', login);
  // Builders announce freed slots on a pub/sub channel: a connection in subscriber mode of its own.
  const subscriber = connectRedis(config.redisUrl, 'worker', login);
  producer.on('error', (err) => logger.error({ err }, 'Redis connection error'));
  workerConnection.on('error', (err) => logger.error({ err }, 'Redis connection error (report relay)'));
  subscriber.on('error', (err) => logger.error({ err }, 'Redis connection error (capacity announcements)'));
  const buildQueue = openQueue(QueueName.build, producer, prefix, logger);
  const signQueue = openQueue(QueueName.sign, producer, prefix, logger);
  const uploadQueue = openQueue(QueueName.upload, producer, prefix, logger);
  // The upload queue's events come on a connection of their own, duplicated from the producer's.
  const uploadEvents = openQueueEvents(QueueName.upload, producer, prefix, logger);
  // The relay reads every sender's report queue; the connector's own reports go to its own.
  const reportQueues = Object.fromEntries(
    REPORT_SENDERS.map((sender) => [sender, openQueue(REPORT_QUEUES[sender], producer, prefix, logger)]),
  ) as Record<ReportSender, Queue>;
  const inbox = (sender: ReportSender): ReportInbox =>
    bullmqReportInbox(REPORT_QUEUES[sender], reportQueues[sender], workerConnection, prefix, logger);
  const inboxes = { connector: inbox('connector'), builder: inbox('builder'), signer: inbox('signer'), uploader: inbox('uploader') };
  return {
    buildQueue: { add: (name, data, options) => buildQueue.add(name, data, options), ...bullmqWatchedQueue(buildQueue) },
    signQueue: bullmqWatchedQueue(signQueue),
    uploadQueue: bullmqWatchedQueue(uploadQueue),
    uploadsSettled: bullmqSettledFeed(uploadEvents),
    reports: reportQueues.connector,
    inboxes,
    records: redisJobRecords(workerConnection, prefix),
    builders: redisBuilderBoard(producer, subscriber, prefix, logger),
    kindBlocks: redisKindBlocks(producer, prefix),
    notes: redisLighthouseNotes(producer, prefix),
    lock: redisConnectorLock(producer, prefix),
    ready: () => redisReady(producer),
    async close() {
      await runCloseSteps(
        [
          // The relay closed the ones it ran; these are the ones it never started (closing twice is harmless).
          ['stop the report inboxes', () => Promise.all(Object.values(inboxes).map((inbox) => inbox.close()))],
          [
            'close queues',
            () =>
              Promise.all([
                ...[buildQueue, signQueue, uploadQueue, ...Object.values(reportQueues)].map((queue) => queue.close()),
                uploadEvents.close(),
              ]),
          ],
          ['close Redis', () => Promise.all([producer.quit(), workerConnection.quit(), subscriber.quit()])],
        ],
        logger,
      );
    },
  };
}

/** What {@link createConnectorOnRedis} needs besides the config and the Redis it opens. */
export type ConnectorOnRedisOptions = Pick<ConnectorDeps, 'keys' | 'logger' | 'onFatal' | 'backoff' | 'rejectionCooldown'>;

/**
 * The connector as main.ts runs it: its queues and records on Redis, the wall
 * clock. Its `close` stops it, then closes the connections it opened.
 */
export function createConnectorOnRedis(config: SparkConfig, options: ConnectorOnRedisOptions): Connector {
  const redis = openConnectorRedis(config, options.logger);
  const connector = createConnector({ config, clock: systemClock, ...redis, ...options });
  return {
    start: () => connector.start(),
    close: once(async () => {
      await connector.close();
      await redis.close();
    }),
  };
}
