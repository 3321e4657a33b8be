import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { DEFAULT_CONFIG_FILE, EXIT_CONFIG } from '@spark/config';
import { QueueName, stageJobId } from '@spark/protocol';
import { connectRedis, redactRedisUrl, redisReady } from '@spark/service';
import { currentRound, cliRedisLogin, jobUuidArgument, loadCliConfig } from './cli-config.js';
import { usageError, type CliIo } from './commands.js';

/**
 * `spark retry-upload <uuid>`: moves the job's failed `upload` job back to the
 * queue with its attempts reset. Exit 0 when re-queued (or already waiting or
 * running), 1 when there is no such job or it completed, 64 on a bad command
 * line, 2 on a bad config.
 */
export async function runRetryUpload(argv: string[], io: CliIo): Promise<number> {
  let file: string;
  let uuid: string;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' } },
      allowPositionals: true,
      strict: true,
    });
    uuid = jobUuidArgument(positionals);
    file = values.config ?? DEFAULT_CONFIG_FILE;
  } catch (error) {
    return usageError(io, 'retry-upload', (error as Error).message);
  }
  const config = loadCliConfig(file, io.stderr);
  if (!config) return EXIT_CONFIG;
  const login = cliRedisLogin(config, 'admin', io.stderr);
  if (!login) return EXIT_CONFIG;
  const redis = connectRedis(config.redisUrl, 'producer', login);
  redis.on('error', () => undefined);
  const queue = new Queue(QueueName.upload, { connection: redis, prefix: config.queuePrefix });
  queue.on('error', () => undefined);
  try {
    await redisReady(redis, 5_000).catch((error: Error) => {
      throw new Error(`cannot reach Redis at ${redactRedisUrl(config.redisUrl)}: ${error.message}`);
    });
    const jobId = stageJobId(await currentRound(redis, config.queuePrefix, uuid), 'upload');
    const job = await queue.getJob(jobId);
    if (!job) {
      io.stderr.write(`spark retry-upload: no upload job ${jobId} in queue ${config.queuePrefix}:${QueueName.upload}\n`);
      return 1;
    }
    const state = await job.getState();
    switch (state) {
      case 'failed':
        await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
        io.stdout.write(`re-queued upload of job ${uuid} (it had failed: ${job.failedReason})\n`);
        return 0;
      case 'completed':
        io.stderr.write(`spark retry-upload: the upload of job ${uuid} completed already; nothing to retry\n`);
        return 1;
      case 'active':
      case 'waiting':
      case 'waiting-children':
      case 'delayed':
      case 'prioritized':
        io.stdout.write(`the upload of job ${uuid} is ${state}; nothing to retry\n`);
        return 0;
      case 'unknown':
        io.stderr.write(`spark retry-upload: job ${jobId} vanished while being looked at; run the command again\n`);
        return 1;
    }
  } catch (error) {
    io.stderr.write(`spark retry-upload: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await queue.close().catch(() => undefined);
    await redis.quit().catch(() => undefined);
  }
}
