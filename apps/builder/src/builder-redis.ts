import type { SparkConfig } from '@spark/config';
import { builderCapacityChannel, builderControlChannel, QueueName, REPORT_QUEUES } from '@spark/protocol';
import {
  bullmqLockingInbox,
  connectRedis,
  KEEP_COMPLETED,
  once,
  openQueue,
  redisLogin,
  redisReady,
  removeBuilderHeartbeat,
  runCloseSteps,
  systemClock,
  writeBuilderHeartbeat,
  type JobOutbox,
  type LockingInbox,
  type Logger,
} from '@spark/service';
import { createBuilder, type Builder, type BuilderDeps, type ControlChannel } from './builder.js';
import type { HeartbeatBoard } from './heartbeat.js';

/*
 * A killed builder's job is picked up again once its lock expires: a short
 * lock (renewed every lockDuration/2 while the build runs) lets a restarted
 * builder resume it within seconds instead of a minute. A few kills are
 * tolerated — a crashed host is rarely the job's fault — and a job that went
 * through more is rejected back to Lighthouse (the builder's failed-job report).
 */
const BUILDER_LOCKS = { lockDuration: 10_000, stalledInterval: 5_000, maxStalledCount: 3 };

/** The builder's queues, heartbeat board and control channel on Redis, as `createBuilder` takes them. */
export interface BuilderRedis {
  buildJobs: LockingInbox;
  signs: JobOutbox;
  reports: JobOutbox;
  heartbeats: HeartbeatBoard;
  control: ControlChannel;
  /** Resolves once Redis answers. */
  ready(): Promise<void>;
  /** Closes the queues, the control channel and the connections; call it after the builder's `close`. */
  close(): Promise<void>;
}

/**
 * Opens the builder's connections to Redis (as the `builder` user when
 * credentials are set up) and its queues: the `build` queue's worker takes up
 * to `MaxJobs` jobs at once.
 */
export function openBuilderRedis(
  config: Pick<SparkConfig, 'redisUrl' | 'queuePrefix' | 'maxJobs'> & Partial<Pick<SparkConfig, 'redisCredentialsDir'>>,
  logger: Logger,
): BuilderRedis {
  const login = redisLogin(config.redisCredentialsDir, 'builder');
  const workerRedis = connectRedis(config.redisUrl, 'worker', login);
  // Hand-offs happen inside job processing: while Redis is away they must wait for it
  // (a 'worker' connection queues commands), not fail the job as a fail-fast producer would.
  const producerRedis = connectRedis(config.redisUrl, 'worker', login);
  const controlRedis = connectRedis(config.redisUrl, 'worker', login);
  for (const redis of [workerRedis, producerRedis, controlRedis]) {
    redis.on('error', (err) => logger.warn({ err }, 'Redis connection error; reconnecting'));
  }
  const reportQueue = openQueue(REPORT_QUEUES.builder, producerRedis, config.queuePrefix, logger);
  const signQueue = openQueue(QueueName.sign, producerRedis, config.queuePrefix, logger);
  const buildJobs = bullmqLockingInbox(QueueName.build, workerRedis, config.queuePrefix, logger, {
    ...BUILDER_LOCKS,
    concurrency: config.maxJobs,
    removeOnComplete: KEEP_COMPLETED,
  });
  const controlChannel = builderControlChannel(config.queuePrefix);
  return {
    buildJobs,
    signs: signQueue,
    reports: reportQueue,
    heartbeats: {
      write: (heartbeat) => writeBuilderHeartbeat(producerRedis, config.queuePrefix, heartbeat),
      remove: (id) => removeBuilderHeartbeat(producerRedis, config.queuePrefix, id),
      announceCapacity: async (id) => {
        await producerRedis.publish(builderCapacityChannel(config.queuePrefix), id);
      },
    },
    control: {
      async listen(onMessage) {
        controlRedis.on('message', (channel: string, message: string) => {
          if (channel === controlChannel) onMessage(message);
        });
        await controlRedis.subscribe(controlChannel);
      },
    },
    ready: () => redisReady(producerRedis),
    async close() {
      await runCloseSteps(
        [
          ['build worker', () => buildJobs.close()],
          ['control channel', () => controlRedis.quit()],
          [`${REPORT_QUEUES.builder} queue`, () => reportQueue.close()],
          ['sign queue', () => signQueue.close()],
          ['worker Redis', () => workerRedis.quit()],
          ['producer Redis', () => producerRedis.quit()],
        ],
        logger,
      );
    },
  };
}

/**
 * The builder as main.ts runs it: its queues, heartbeat board and control
 * channel on Redis, the wall clock. Its `close` drains the builder, then
 * closes the connections it opened.
 */
export function createBuilderOnRedis(
  config: SparkConfig,
  logger: Logger,
  options: Pick<BuilderDeps, 'debspawn' | 'killGraceMs' | 'id'> = {},
): Builder {
  const redis = openBuilderRedis(config, logger);
  const builder = createBuilder({
    config,
    logger,
    clock: systemClock,
    buildJobs: redis.buildJobs,
    signs: redis.signs,
    reports: redis.reports,
    heartbeats: redis.heartbeats,
    control: redis.control,
    ready: () => redis.ready(),
    ...options,
  });
  return {
    id: builder.id,
    start: () => builder.start(),
    close: once(() => builder.close().then(() => redis.close())),
  };
}
