import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, loadConfigOrExitCode } from '@spark/config';
import {
  builderControlChannel,
  QueueName,
  REPORT_QUEUES,
  reportJobId,
  reportPayloadSchema,
  stageJobId,
  type BuilderControlMessage,
} from '@spark/protocol';
import { openQueue } from '@spark/service';
import { currentRound, jobUuidArgument, openCliRedis } from './cli-config.js';
import { usageError, type CliIo } from './commands.js';

/** How long `spark cancel` waits for the builder to confirm, in ms. */
const CONFIRM_TIMEOUT_MS = 60_000;

/**
 * `spark cancel <uuid>`: asks the builders to stop a running job. Exit 0 once
 * the builder has rejected it back to Lighthouse, 1 when no builder runs it
 * or none confirmed in time, 64 on a bad command line, 78 on a bad config (66
 * missing), 69 when Redis does not answer.
 */
export async function runCancel(argv: string[], io: CliIo): Promise<number> {
  let file: string;
  let uuid: string;
  let reason: string;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, reason: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
    uuid = jobUuidArgument(positionals);
    file = values.config ?? DEFAULT_CONFIG_FILE;
    reason = (values.reason ?? 'spark cancel').slice(0, 512);
  } catch (error) {
    return usageError(io, 'cancel', (error as Error).message);
  }
  const config = loadConfigOrExitCode(file, io.stderr);
  if (typeof config === 'number') return config;
  const redis = await openCliRedis(config, 'admin', io.stderr, 'cancel');
  if (typeof redis === 'number') return redis;
  const build = openQueue(QueueName.build, redis, config.queuePrefix, null);
  const report = openQueue(REPORT_QUEUES.builder, redis, config.queuePrefix, null);
  try {
    const round = await currentRound(redis, config.queuePrefix, uuid);
    const job = await build.getJob(stageJobId(round, 'build'));
    const state = job ? await job.getState() : 'unknown';
    if (state !== 'active') {
      io.stderr.write(`spark cancel: job ${uuid} is not running on a builder (build job state: ${state})\n`);
      return 1;
    }
    const message: BuilderControlMessage = { action: 'cancel', uuid, reason };
    await redis.publish(builderControlChannel(config.queuePrefix), JSON.stringify(message));
    const deadline = Date.now() + CONFIRM_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const final = await report.getJob(reportJobId(round, { kind: 'final' }));
      const parsed = final ? reportPayloadSchema.safeParse(final.data) : null;
      if (parsed?.success) {
        const outcome =
          parsed.data.kind === 'rejected' ? `rejected back to Lighthouse: ${parsed.data.reason}` : `ended as ${parsed.data.kind}`;
        io.stdout.write(`job ${uuid} ${outcome}\n`);
        return parsed.data.kind === 'rejected' ? 0 : 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    io.stderr.write(`spark cancel: no builder confirmed stopping job ${uuid} within ${CONFIRM_TIMEOUT_MS / 1000} s\n`);
    return 1;
  } catch (error) {
    io.stderr.write(`spark cancel: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await build.close().catch(() => undefined);
    await report.close().catch(() => undefined);
    redis.disconnect();
  }
}
