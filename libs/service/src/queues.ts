import { Queue, QueueEvents, Worker, type Processor, type WorkerOptions } from 'bullmq';
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import { BUILD_RESULTS, QueueName, uploadOutcomeSchema } from '@spark/protocol';
import { currentMetrics } from './metrics.js';

/**
 * The results, besides `failed`, that the protocol names for a stage's jobs
 * (`spark_jobs_total{result}`). Their counters start at 0 when the stage's
 * worker opens: Prometheus's `increase()` cannot count the first increment of
 * a series that appears at 1, so an alert on a stage's first failure after a
 * start would never fire.
 */
const STAGE_RESULTS: Partial<Record<QueueName, readonly string[]>> = {
  [QueueName.build]: BUILD_RESULTS,
  [QueueName.upload]: uploadOutcomeSchema.options.map((option) => option.shape.result.value),
};

/** Completed jobs kept for the dashboard and `spark status` (count / seconds). */
export const KEEP_COMPLETED = { count: 1000, age: 7 * 24 * 3600 };
/** Failed jobs are kept until an operator acts on them (`spark retry-upload` etc.). */
export const KEEP_FAILED = false;

/** How {@link openQueue} opens a queue. */
export interface OpenQueueOptions {
  /**
   * Only to read it (default false): BullMQ then does not write the queue's
   * meta key as it opens it, which a read-only Redis user (`spark-operator`)
   * may not do.
   */
  readOnly?: boolean;
}

/**
 * Opens pipeline queue `name` under `prefix` on `connection`, with the kept
 * jobs every queue has (KEEP_COMPLETED, KEEP_FAILED) and an `error` listener:
 * it logs with `logger`, or drops the error when `logger` is null (a `spark`
 * command, whose failed call says what went wrong).
 */
export function openQueue(
  name: QueueName,
  connection: Redis,
  prefix: string,
  logger: Logger | null,
  options: OpenQueueOptions = {},
): Queue {
  const queue = new Queue(name, {
    connection,
    prefix,
    skipMetasUpdate: options.readOnly ?? false,
    defaultJobOptions: { removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED },
  });
  queue.on('error', (err) => logger?.error({ err, queue: name }, `queue ${name}: Redis error`));
  return queue;
}

/**
 * Starts the one handler of a pipeline queue, with an `error` listener that
 * logs. `connection` must be a `worker` connection (maxRetriesPerRequest: null).
 */
export function openWorker<T>(
  name: QueueName,
  processor: Processor<T>,
  connection: Redis,
  prefix: string,
  logger: Logger,
  options: Omit<WorkerOptions, 'connection' | 'prefix'> = {},
): Worker<T> {
  const worker = new Worker<T>(name, processor, { connection, prefix, ...options });
  worker.on('error', (err) => logger.error({ err, queue: name }, `worker for ${name}: Redis error`));
  const metrics = currentMetrics();
  if (metrics) {
    // Every stage's jobs and durations, counted in one place: a job's result is
    // the `result` its processor returned (a build's `success`, an upload's
    // `gave-up`), else its `outcome` (a build `rejected` back or `dropped`),
    // else `done`; `failed` when BullMQ failed it.
    const record = (job: { processedOn?: number | undefined; finishedOn?: number | undefined } | undefined, result: string) => {
      metrics.jobsTotal.inc({ stage: name, result });
      if (job?.processedOn && job.finishedOn) metrics.stageDuration.observe({ stage: name }, (job.finishedOn - job.processedOn) / 1000);
    };
    for (const result of ['failed', ...(STAGE_RESULTS[name] ?? [])]) metrics.jobsTotal.inc({ stage: name, result }, 0);
    worker.on('completed', (job, value: unknown) => {
      const field = (key: 'result' | 'outcome') => {
        const found = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
        return typeof found === 'string' ? found : undefined;
      };
      record(job, field('result') ?? field('outcome') ?? 'done');
    });
    worker.on('failed', (job) => record(job, 'failed'));
  }
  return worker;
}

/** Opens a QueueEvents listener with an `error` listener that logs. */
export function openQueueEvents(name: QueueName, connection: Redis, prefix: string, logger: Logger): QueueEvents {
  const events = new QueueEvents(name, { connection, prefix });
  events.on('error', (err) => logger.error({ err, queue: name }, `events of ${name}: Redis error`));
  return events;
}
