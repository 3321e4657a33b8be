import { jobRecordKey, UUID, type JobRound } from '@spark/protocol';
import { EX_NOINPUT, EX_UNAVAILABLE, type SparkConfig } from '@spark/config';
import {
  connectRedis,
  readJobRecord,
  redactRedisUrl,
  redisLogin,
  RedisLoginError,
  redisReady,
  type Redis,
  type RedisOptions,
  type RedisRoleName,
} from '@spark/service';

/**
 * How a CLI command logs in to this host's Redis: as `role` (`operator` to
 * read, `admin` to change) with its password file from `RedisCredentialsDir`,
 * or not at all without one. Null, with the problem on `stderr`, when the
 * password file cannot be read (run the command as root).
 */
export function cliRedisLogin(
  config: Pick<SparkConfig, 'redisCredentialsDir'>,
  role: RedisRoleName,
  stderr: NodeJS.WritableStream,
): Pick<RedisOptions, 'username' | 'password'> | null {
  try {
    return redisLogin(config.redisCredentialsDir, role);
  } catch (error) {
    if (!(error instanceof RedisLoginError)) throw error;
    stderr.write(`${error.message}\n`);
    return null;
  }
}

/** How long a CLI command waits for this host's Redis before it gives up, in ms. */
const REDIS_READY_TIMEOUT_MS = 5_000;

/**
 * This host's Redis for CLI command `command`, logged in as `role` (see
 * {@link cliRedisLogin}) and ready. When it cannot be, the problem is on
 * `stderr` and the result is the command's exit code: 66 (EX_NOINPUT) when the
 * password file cannot be read, 69 (EX_UNAVAILABLE) when Redis does not answer
 * (its URL shown without a password).
 */
export async function openCliRedis(
  config: Pick<SparkConfig, 'redisUrl' | 'redisCredentialsDir'>,
  role: RedisRoleName,
  stderr: NodeJS.WritableStream,
  command: string,
): Promise<Redis | number> {
  const login = cliRedisLogin(config, role, stderr);
  if (!login) return EX_NOINPUT;
  const redis = connectRedis(config.redisUrl, 'producer', login);
  redis.on('error', () => undefined);
  try {
    await redisReady(redis, REDIS_READY_TIMEOUT_MS);
    return redis;
  } catch (error) {
    redis.disconnect();
    stderr.write(`spark ${command}: cannot reach Redis at ${redactRedisUrl(config.redisUrl)}: ${(error as Error).message}\n`);
    return EX_UNAVAILABLE;
  }
}

/** The one job uuid a command takes (lowercased); throws a usage message otherwise. */
export function jobUuidArgument(positionals: readonly string[]): string {
  const [uuid] = positionals;
  if (positionals.length !== 1 || uuid === undefined || !UUID.test(uuid)) {
    throw new Error(`expected one job uuid, got ${JSON.stringify(positionals.join(' '))}`);
  }
  return uuid.toLowerCase();
}

/**
 * The latest round of job `uuid` on this host, from the connector's job record;
 * throws a message for the operator when this worker holds no such job.
 */
export async function currentRound(redis: Redis, prefix: string, uuid: string): Promise<JobRound> {
  const record = await readJobRecord(redis, prefix, uuid);
  if (!record) throw new Error(`job ${uuid} was not handed out to this worker (no record ${jobRecordKey(prefix, uuid)})`);
  return { uuid: record.uuid, round: record.round };
}
