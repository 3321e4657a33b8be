import { randomBytes } from 'node:crypto';
import type { SparkConfig } from '@spark/config';
import { jobRecordKey, QueueName, queueKeysPattern, signerRoundKey } from '@spark/protocol';
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
      allowed: { what: 'change the build queue', command: ['DEL', queueKeysPattern(prefix, QueueName.build).replace('*', none)] },
      refused: { what: 'read job records', command: ['GET', jobRecord] },
    },
    signer: {
      allowed: { what: 'mark the rounds it takes', command: ['DEL', signerRoundKey(prefix, none)] },
      refused: writeJobRecord,
    },
    uploader: {
      allowed: { what: 'change the upload queue', command: ['DEL', queueKeysPattern(prefix, QueueName.upload).replace('*', none)] },
      refused: writeJobRecord,
    },
    operator: { allowed: { what: 'read job records', command: ['EXISTS', jobRecord] }, refused: writeJobRecord },
    admin: { allowed: writeJobRecord, refused: config },
    dashboard: {
      allowed: { what: 'change the build queue', command: ['DEL', queueKeysPattern(prefix, QueueName.build).replace('*', none)] },
      refused: { what: 'read job records', command: ['GET', jobRecord] },
    },
  };
}

const describe = (probe: Probe) => `${probe.command[0]} (${probe.what})`;

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
        `RedisCredentialsDir is not set: every service logs in as Redis's default user, and the builder can write what only the connector and signer may; run deploy/install.sh (it sets it up with spark redis-acl)`,
      ),
    );
    try {
      (await open(config.redisUrl, {})).disconnect();
      results.push(ok('Redis', `${shown} answers`));
    } catch (error) {
      results.push(problem('Redis', 'unavailable', `${shown} does not answer: ${errorText(error)}; is redis-server running?`));
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
        `${shown} lets a client in without a password: put "aclfile /etc/redis/spark-users.acl" in redis.conf (deploy/install.sh does) and restart redis-server`,
      ),
    );
  } catch (error) {
    const text = errorText(error);
    if (!/NOAUTH/.test(text)) {
      results.push(problem('Redis', 'unavailable', `${shown} does not answer: ${text}; is redis-server running?`));
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
              `cannot log in with ${config.redisCredentialsDir}/${user}.password: ${text}; the password file and Redis's ACL file differ: run spark redis-acl, then restart redis-server`,
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
            `may not ${describe(allowed)}, which ${user.replace(/^spark-/, 'the ')} needs: ${errorText(error)}; the ACL file is not this version's: run spark redis-acl, then restart redis-server`,
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
            `may ${describe(refused)}, which only other users may: its ACL rules are too wide; run spark redis-acl, then restart redis-server`,
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
  return results;
}
