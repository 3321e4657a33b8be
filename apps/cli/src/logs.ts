import { open, readdir } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { DEFAULT_CONFIG_FILE, EXIT_CONFIG } from '@spark/config';
import { jobLogFile, parseJobId, QueueName, stageJobId, type JobRound } from '@spark/protocol';
import { connectRedis, redactRedisUrl, redisReady } from '@spark/service';
import { cliRedisLogin, jobUuidArgument, loadCliConfig } from './cli-config.js';
import { usageError, type CliIo } from './commands.js';

/** How often a followed log is read for new output, in ms. */
const FOLLOW_INTERVAL_MS = 250;

/** The latest round of `uuid` with a log in `logsDir` (`<uuid>.<round>.log`), or null. */
async function latestLoggedRound(logsDir: string, uuid: string): Promise<JobRound | null> {
  const rounds = (await readdir(logsDir).catch(() => []))
    .map((name) => (name.endsWith('.log') ? parseJobId(name.slice(0, -'.log'.length)) : null))
    .filter((id) => id?.uuid === uuid && id.type === 'stage' && id.stage === 'build')
    .map((id) => id?.round ?? '');
  const latest = rounds.sort((a, b) => Number(b) - Number(a))[0];
  return latest ? { uuid, round: latest } : null;
}

/**
 * `spark logs [-f] <uuid>`: prints the log of the job's latest round,
 * `<WorkspaceRoot>/logs/<uuid>.<round>.log`; with
 * `-f`, keeps printing what is appended until the job's build ends. Exit 0,
 * 1 when there is no log, 64 on a bad command line, 2 on a bad config.
 */
export async function runLogs(argv: string[], io: CliIo): Promise<number> {
  let file: string;
  let uuid: string;
  let follow: boolean;
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { config: { type: 'string', short: 'c' }, follow: { type: 'boolean', short: 'f' } },
      allowPositionals: true,
      strict: true,
    });
    uuid = jobUuidArgument(positionals);
    file = values.config ?? DEFAULT_CONFIG_FILE;
    follow = values.follow ?? false;
  } catch (error) {
    return usageError(io, 'logs', (error as Error).message);
  }
  const config = loadCliConfig(file, io.stderr);
  if (!config) return EXIT_CONFIG;
  const round = await latestLoggedRound(config.logsDir, uuid);
  const path = round ? jobLogFile(config.logsDir, round) : null;
  const handle = path ? await open(path, 'r').catch(() => null) : null;
  if (!round || !handle) {
    io.stderr.write(`spark logs: job ${uuid} has no log in ${config.logsDir}\n`);
    return 1;
  }
  let offset = 0;
  const copyNew = async () => {
    const buffer = Buffer.alloc(1024 * 1024);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) return;
      offset += bytesRead;
      io.stdout.write(Buffer.from(buffer.subarray(0, bytesRead)));
    }
  };
  if (!follow) {
    await copyNew();
    await handle.close();
    return 0;
  }
  const login = cliRedisLogin(config, 'operator', io.stderr);
  if (!login) return EXIT_CONFIG;
  const redis = connectRedis(config.redisUrl, 'producer', login);
  redis.on('error', () => undefined);
  const build = new Queue(QueueName.build, { connection: redis, prefix: config.queuePrefix });
  build.on('error', () => undefined);
  try {
    await redisReady(redis, 5_000).catch((error: Error) => {
      throw new Error(`cannot reach Redis at ${redactRedisUrl(config.redisUrl)}: ${error.message}`);
    });
    for (;;) {
      const job = await build.getJob(stageJobId(round, 'build'));
      const running = job ? (await job.getState()) === 'active' : false;
      await copyNew();
      // The builder closes the log before its build job completes, so nothing follows once it is not active.
      if (!running) return 0;
      await new Promise((resolve) => setTimeout(resolve, FOLLOW_INTERVAL_MS));
    }
  } catch (error) {
    io.stderr.write(`spark logs: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await handle.close();
    await build.close().catch(() => undefined);
    redis.disconnect();
  }
}
