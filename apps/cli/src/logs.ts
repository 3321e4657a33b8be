import { open, readdir, type FileHandle } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_FILE, loadConfigOrExitCode } from '@spark/config';
import { jobLogFile, parseJobId, QueueName, stageJobId, type JobRound } from '@spark/protocol';
import { openQueue, readJobRecord } from '@spark/service';
import { jobUuidArgument, openCliRedis } from './cli-config.js';
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

/** A log file being printed from where the last read stopped. */
class LogCopy {
  private offset = 0;
  private readonly buffer = Buffer.alloc(1024 * 1024);
  constructor(
    private readonly handle: FileHandle,
    private readonly out: NodeJS.WritableStream,
  ) {}

  /** Prints what was appended since the last call. */
  async copyNew(): Promise<void> {
    for (;;) {
      const { bytesRead } = await this.handle.read(this.buffer, 0, this.buffer.length, this.offset);
      if (bytesRead === 0) return;
      this.offset += bytesRead;
      this.out.write(Buffer.from(this.buffer.subarray(0, bytesRead)));
    }
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/**
 * `spark logs [-f] <uuid>`: prints the log of the job's latest round,
 * `<WorkspaceRoot>/logs/<uuid>.<round>.log`; with `-f`, keeps printing what
 * is appended until the job's build ends — and when Lighthouse hands the job
 * to this worker again meanwhile, goes on with the new round's log (a line on
 * stderr says so). Exit 0, 1 when there is no log, 64 on a bad command line,
 * 2 on a bad config.
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
  const config = loadConfigOrExitCode(file, io.stderr);
  if (typeof config === 'number') return config;
  let round = await latestLoggedRound(config.logsDir, uuid);
  const handle = round ? await open(jobLogFile(config.logsDir, round), 'r').catch(() => null) : null;
  if (!round || !handle) {
    io.stderr.write(`spark logs: job ${uuid} has no log in ${config.logsDir}\n`);
    return 1;
  }
  let log = new LogCopy(handle, io.stdout);
  if (!follow) {
    await log.copyNew();
    await log.close();
    return 0;
  }
  const redis = await openCliRedis(config, 'operator', io.stderr, 'logs');
  if (typeof redis === 'number') {
    await log.close();
    return redis;
  }
  // Read-only: it reads as the operator, who may not write.
  const build = openQueue(QueueName.build, redis, config.queuePrefix, null, { readOnly: true });
  const buildState = async (of: JobRound) => (await build.getJob(stageJobId(of, 'build')))?.getState() ?? 'unknown';
  try {
    for (;;) {
      const running = (await buildState(round)) === 'active';
      await log.copyNew();
      if (running) {
        await sleep(FOLLOW_INTERVAL_MS);
        continue;
      }
      // The builder closes the log before its build job completes, so this round's log is whole.
      // A newer round of the job on this worker is followed once its build has started.
      const latest = await readJobRecord(redis, config.queuePrefix, uuid);
      if (!latest || Number(latest.round) <= Number(round.round)) return 0;
      const next: JobRound = { uuid, round: latest.round };
      const state = await buildState(next);
      if (state === 'waiting' || state === 'prioritized' || state === 'delayed') {
        await sleep(FOLLOW_INTERVAL_MS);
        continue;
      }
      const nextHandle = await open(jobLogFile(config.logsDir, next), 'r').catch(() => null);
      if (!nextHandle) {
        // A build just taken has no log until the builder has prepared its workspace.
        if (state !== 'active') return 0;
        await sleep(FOLLOW_INTERVAL_MS);
        continue;
      }
      await log.close();
      log = new LogCopy(nextHandle, io.stdout);
      round = next;
      io.stderr.write(`spark logs: job ${uuid} was handed out to this worker again; following round ${next.round}\n`);
    }
  } catch (error) {
    io.stderr.write(`spark logs: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await log.close().catch(() => undefined);
    await build.close().catch(() => undefined);
    redis.disconnect();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
