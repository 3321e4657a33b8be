import type { SparkConfig } from '@spark/config';
import { UUID, type JobRound } from '@spark/protocol';
import { readJobRecord, redisLogin, RedisLoginError, type Redis, type RedisOptions, type RedisRoleName } from '@spark/service';

// `spark run` imports load-cli-config.ts alone, without the Redis and queue code here (docs/benchmarks.md, "Idle memory").
export { loadCliConfig } from './load-cli-config.js';

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
  if (!record) throw new Error(`job ${uuid} was not handed out to this worker (no record of it under ${prefix}:jobs:)`);
  return { uuid: record.uuid, round: record.round };
}
