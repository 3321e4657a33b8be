import { randomBytes } from 'node:crypto';
import type { SparkConfig } from '@spark/config';
import { jobRecordKey, QueueName, queueKey, signerRoundKey } from '@spark/protocol';
import {
  connectRedis,
  redactRedisUrl,
  REDIS_USERS,
  redisLogin,
  RedisLoginError,
  redisReady,
  type Redis,
  type RedisRoleName,
} from '@spark/service';
import { ok, problem, skipped, type CheckResult } from './check-result.js';

/** A command sent to see whether a Redis user may run it: it changes nothing whether it is allowed or not. */
interface Probe {
  /** What it stands for, for the message. */
  what: string;
  command: [string, ...string[]];
}

/**
 * For each user, one command its service needs and one it must be refused
 * (NOPERM), from the rules in libs/service redis-acl.ts. Every key is a fresh
 * random name that holds nothing, so a DEL that is wrongly allowed deletes
 * nothing, and a read returns nothing.
 */
function probes(prefix: string): Record<RedisRoleName, { allowed: Probe; refused: Probe }> {
  const none = `spark-verify-${randomBytes(6).toString('hex')}`;
  const jobRecord = jobRecordKey(prefix, none);
  const writeJobRecord: Probe = { what: 'write job records', command: ['DEL', jobRecord] };
  const config: Probe = { what: 'read the server config', command: ['CONFIG', 'GET', 'maxmemory-policy'] };
  return {
    connector: { allowed: writeJobRecord, refused: config },
    builder: {
      allowed: { what: 'change the build queue', command: ['DEL', queueKey(prefix, QueueName.build, none)] },
      refused: { what: 'read job records', command: ['GET', jobRecord] },
    },
    signer: {
      allowed: { what: 'mark the rounds it takes', command: ['DEL', signerRoundKey(prefix, none)] },
      refused: writeJobRecord,
    },
    uploader: {
      allowed: { what: 'change the upload queue', command: ['DEL', queueKey(prefix, QueueName.upload, none)] },
      refused: writeJobRecord,
    },
    operator: { allowed: { what: 'read job records', command: ['EXISTS', jobRecord] }, refused: writeJobRecord },
    admin: { allowed: writeJobRecord, refused: config },
    dashboard: {
      allowed: { what: 'change the build queue', command: ['DEL', queueKey(prefix, QueueName.build, none)] },
      refused: { what: 'read job records', command: ['GET', jobRecord] },
    },
  };
}

const describe = (probe: Probe) => `${probe.command[0]} (${probe.what})`;

/** How to reach the Redis setup-host (deploy/setup-host.sh) sets up, for the fixes the checks name. */
const INSTANCE = "the worker's own Redis, redis-server@spark (its config /etc/redis/redis-spark.conf)";
const RESTART = 'systemctl restart redis-server@spark';

/**
 * The server as the services need it: `maxmemory-policy noeviction`
 * (BullMQ's production guide: an evicted key is a lost job). Names the
 * config file it runs from and its memory limit.
 */
async function checkServer(redis: Redis, shown: string): Promise<CheckResult> {
  const info = `${await redis.info('server')}\n${await redis.info('memory')}`;
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
  const configFile = field('config_file');
  const from = configFile === '' ? 'no config file' : `config ${configFile}`;
  const policy = field('maxmemory_policy');
  if (policy !== 'noeviction') {
    return problem(
      'Redis server',
      'config',
      `${shown} (${from}) has maxmemory-policy ${policy}: it may evict BullMQ's keys, losing jobs; set maxmemory-policy noeviction there and restart it (dpkg-reconfigure spark-ts sets it for ${INSTANCE})`,
    );
  }
  const max = field('maxmemory');
  return ok('Redis server', `${shown}: ${from}, maxmemory ${max === '0' ? 'none' : `${max} bytes`}, maxmemory-policy noeviction`);
}

function errorText(error: unknown): string {
  return (error as Error).message.split('\n')[0] ?? String(error);
}

/** Connects without retries, as `spark status` does; resolves once ready, or rejects with why. */
async function open(url: string, login: { username?: string; password?: string }): Promise<Redis> {
  const redis = connectRedis(url, 'producer', { ...login, retryStrategy: () => null, connectTimeout: 3_000 });
  redis.on('error', () => undefined);
  try {
    await redisReady(redis, 5_000);
    return redis;
  } catch (error) {
    redis.disconnect();
    throw error;
  }
}

/**
 * Redis as the services use it: it answers; a client that does not log in
 * gets NOAUTH (the default user is off); each user logs in with its password
 * file, may run a command its service needs and is refused (NOPERM) one it
 * must not have.
 */
export async function checkRedis(config: SparkConfig, isRoot: boolean): Promise<CheckResult[]> {
  const shown = redactRedisUrl(config.redisUrl);
  const results: CheckResult[] = [];
  if (config.redisCredentialsDir === null) {
    results.push(
      problem(
        'Redis users',
        'config',
        `RedisCredentialsDir is not set: every service logs in as Redis's default user, and the builder can write what only the connector and signer may; run dpkg-reconfigure spark-ts (it sets it up with spark redis-acl)`,
      ),
    );
    let anonymous: Redis;
    try {
      anonymous = await open(config.redisUrl, {});
    } catch (error) {
      results.push(
        problem(
          'Redis',
          'unavailable',
          `${shown} does not answer: ${errorText(error)}; is it running? (for ${INSTANCE}: systemctl status redis-server@spark)`,
        ),
      );
      return results;
    }
    try {
      results.push(ok('Redis', `${shown} answers`), await checkServer(anonymous, shown));
    } finally {
      anonymous.disconnect();
    }
    return results;
  }

  try {
    const anonymous = await open(config.redisUrl, {});
    anonymous.disconnect();
    results.push(
      problem(
        'Redis default user',
        'config',
        `${shown} lets a client in without a password: put "aclfile /etc/redis/spark-users.acl" in its config and restart it (dpkg-reconfigure spark-ts does both for ${INSTANCE})`,
      ),
    );
  } catch (error) {
    const text = errorText(error);
    if (!/NOAUTH/.test(text)) {
      results.push(
        problem(
          'Redis',
          'unavailable',
          `${shown} does not answer: ${text}; is it running? (for ${INSTANCE}: systemctl status redis-server@spark)`,
        ),
      );
      return results;
    }
    results.push(ok('Redis default user', `${shown} answers, and refuses a client that does not log in (NOAUTH)`));
  }

  const checks = probes(config.queuePrefix);
  for (const role of Object.keys(REDIS_USERS) as RedisRoleName[]) {
    const user = REDIS_USERS[role];
    const check = `Redis user ${user}`;
    let login;
    try {
      login = redisLogin(config.redisCredentialsDir, role);
    } catch (error) {
      if (!(error instanceof RedisLoginError)) throw error;
      if (/EACCES/.test(error.message) && !isRoot) {
        results.push(skipped(check, 'not-root', `cannot read its password file without root`));
      } else {
        results.push(skipped(check, 'not-applicable', `no usable password file (see above): ${error.message}`));
      }
      continue;
    }
    let redis: Redis;
    try {
      redis = await open(config.redisUrl, login);
    } catch (error) {
      const text = errorText(error);
      results.push(
        /WRONGPASS|NOPERM|NOAUTH/.test(text)
          ? problem(
              check,
              'config',
              `cannot log in with ${config.redisCredentialsDir}/${user}.password: ${text}; the password file and Redis's ACL file differ: run spark redis-acl, then ${RESTART}`,
            )
          : problem(check, 'unavailable', `${shown} does not answer: ${text}`),
      );
      continue;
    }
    try {
      const { allowed, refused } = checks[role];
      try {
        await redis.call(...allowed.command);
      } catch (error) {
        results.push(
          problem(
            check,
            'config',
            `may not ${describe(allowed)}, which ${user.replace(/^spark-/, 'the ')} needs: ${errorText(error)}; the ACL file is not this version's: run spark redis-acl, then ${RESTART}`,
          ),
        );
        continue;
      }
      try {
        await redis.call(...refused.command);
        results.push(
          problem(
            check,
            'config',
            `may ${describe(refused)}, which only other users may: its ACL rules are too wide; run spark redis-acl, then ${RESTART}`,
          ),
        );
      } catch (error) {
        const text = errorText(error);
        results.push(
          /NOPERM/.test(text)
            ? ok(check, `logs in; may ${describe(allowed)}; refused ${describe(refused)} (NOPERM)`)
            : problem(check, 'unavailable', `${describe(refused)} failed with ${text} instead of NOPERM`),
        );
      }
    } finally {
      redis.disconnect();
    }
  }
  results.push(await checkServerAsOperator(config, shown, isRoot));
  return results;
}

/** {@link checkServer}, logged in as the read-only operator. */
async function checkServerAsOperator(config: SparkConfig, shown: string, isRoot: boolean): Promise<CheckResult> {
  let login;
  try {
    login = redisLogin(config.redisCredentialsDir, 'operator');
  } catch (error) {
    if (!(error instanceof RedisLoginError)) throw error;
    return /EACCES/.test(error.message) && !isRoot
      ? skipped(
          'Redis server',
          'not-root',
          `cannot read the password file of ${REDIS_USERS.operator} without root (or the group spark-operators)`,
        )
      : skipped('Redis server', 'not-applicable', `no usable password file of ${REDIS_USERS.operator} (see above)`);
  }
  let redis: Redis;
  try {
    redis = await open(config.redisUrl, login);
  } catch (error) {
    return skipped('Redis server', 'not-applicable', `cannot log in as ${REDIS_USERS.operator} (see above): ${errorText(error)}`);
  }
  try {
    return await checkServer(redis, shown);
  } finally {
    redis.disconnect();
  }
}
