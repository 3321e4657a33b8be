import { parseArgs } from 'node:util';
import type { Queue } from 'bullmq';
import { DEFAULT_CONFIG_FILE, loadConfigOrExitCode } from '@spark/config';
import {
  QueueName,
  REPORT_QUEUES,
  reportJobId,
  reportPayloadSchema,
  stageJobId,
  uploadOutcomeSchema,
  uploadStateSchema,
  type JobRound,
} from '@spark/protocol';
import { openQueue } from '@spark/service';
import { currentRound, jobUuidArgument, openCliRedis } from './cli-config.js';
import { usageError, type CliIo } from './commands.js';

/**
 * `spark retry-upload <uuid>`: starts the next try of the job's upload now —
 * a job waiting for its next try is promoted, a failed one moved back to the
 * queue with its attempts reset. A round that was already reported to
 * Lighthouse (uploaded, or given up and reported failed) cannot be retried:
 * its final report is sent, Lighthouse has ended the round, and its files are
 * gone; the message says so and what to do instead. Exit 0 when a try starts
 * (or one is running), 1 when there is no such job or its round has ended,
 * 64 on a bad command line, 78 on a bad config (66 missing), 69 when Redis does
 * not answer.
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
  const config = loadConfigOrExitCode(file, io.stderr);
  if (typeof config === 'number') return config;
  const redis = await openCliRedis(config, 'admin', io.stderr, 'retry-upload');
  if (typeof redis === 'number') return redis;
  const queue = openQueue(QueueName.upload, redis, config.queuePrefix, null);
  const reports = openQueue(REPORT_QUEUES.uploader, redis, config.queuePrefix, null);
  try {
    const round = await currentRound(redis, config.queuePrefix, uuid);
    const jobId = stageJobId(round, 'upload');
    const job = await queue.getJob(jobId);
    if (!job) {
      io.stderr.write(`spark retry-upload: no upload job ${jobId} in queue ${queue.qualifiedName}\n`);
      return 1;
    }
    const state = await job.getState();
    const outcome = uploadOutcomeSchema.safeParse(job.returnvalue);
    const progress = uploadStateSchema.safeParse(job.progress);
    switch (state) {
      case 'failed': {
        const ended = await endedRound(reports, round);
        if (ended) {
          io.stderr.write(`${ended}\n`);
          return 1;
        }
        await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
        io.stdout.write(`re-queued upload of job ${uuid} (it had failed: ${job.failedReason})\n`);
        return 0;
      }
      case 'completed':
        if (outcome.success && outcome.data.result === 'gave-up') {
          io.stderr.write(
            `spark retry-upload: the upload of job ${uuid} (round ${round.round}) was given up and the job reported failed to Lighthouse ` +
              `at ${new Date(outcome.data.at).toISOString()}: ${outcome.data.reason}\n` +
              `Lighthouse has ended that round and its files are removed, so there is nothing to retry. ` +
              `To build the job again, have Lighthouse hand it out again (lk-admin job retry ${uuid}).\n`,
          );
          return 1;
        }
        io.stderr.write(`spark retry-upload: the upload of job ${uuid} completed already; nothing to retry\n`);
        return 1;
      case 'delayed':
        await job.promote();
        io.stdout.write(
          `the upload of job ${uuid} was waiting for its next try` +
            (progress.success && progress.data.phase === 'retrying'
              ? ` (try ${progress.data.tries} failed: ${progress.data.problem})`
              : '') +
            `; trying it again now\n`,
        );
        return 0;
      case 'active':
      case 'waiting':
      case 'waiting-children':
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
    await reports.close().catch(() => undefined);
    await redis.quit().catch(() => undefined);
  }
}

/**
 * What to tell an operator when the uploader's final report of the round is
 * already queued (its id is taken: no later report of the round can reach
 * Lighthouse), or null when it is not.
 */
async function endedRound(reports: Queue, round: JobRound): Promise<string | null> {
  const final = reportPayloadSchema.safeParse((await reports.getJob(reportJobId(round, { kind: 'final' })))?.data);
  if (!final.success) return null;
  const report = final.data;
  const said = report.kind === 'failed' || report.kind === 'rejected' ? `: ${report.reason}` : '';
  return (
    `spark retry-upload: job ${round.uuid} (round ${round.round}) was already reported ${report.kind} to Lighthouse ` +
    `at ${new Date(report.at).toISOString()}${said}\n` +
    `Lighthouse has ended that round, so its upload cannot be retried. ` +
    `To build the job again, have Lighthouse hand it out again (lk-admin job retry ${round.uuid}).`
  );
}
