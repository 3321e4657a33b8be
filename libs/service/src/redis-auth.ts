import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RedisOptions } from 'ioredis';

/*
 * Each service logs in to Redis as its own ACL user (docs/architecture.md,
 * "Trust boundary"), so a compromised builder cannot write what only the
 * connector or the signer may. The users and what they may do are in
 * redis-acl.ts; their passwords are files in `RedisCredentialsDir`, each
 * readable by its service's system user alone.
 */

/** The Redis ACL user of each service, and the operator's (read-only) and admin's for `spark` commands. */
export const REDIS_USERS = {
  connector: 'spark-connector',
  builder: 'spark-builder',
  signer: 'spark-signer',
  uploader: 'spark-uploader',
  /** `spark status`, `spark logs`, the read-only dashboard: reads every key under the prefix, writes none. */
  operator: 'spark-operator',
  /** `spark cancel`, `spark retry-upload`. */
  admin: 'spark-admin',
  /** The dashboard with `--read-write`: the queues' keys only (retry, remove, add jobs), nothing else. */
  dashboard: 'spark-dashboard',
} as const;
/** Who logs in to Redis. */
export type RedisRoleName = keyof typeof REDIS_USERS;

/** `<dir>/<user>.password`: the file holding a Redis user's password (one line). */
export function redisPasswordFile(credentialsDir: string, role: RedisRoleName): string {
  return join(credentialsDir, `${REDIS_USERS[role]}.password`);
}

/** A Redis user's password file is missing, unreadable or empty. The message names the file, never its content. */
export class RedisLoginError extends Error {
  override readonly name = 'RedisLoginError';
}

/**
 * The ioredis options that log `role` in: `{ username, password }` read from
 * its file in `credentialsDir`, or `{}` (the default user, as before) when no
 * `RedisCredentialsDir` is configured. Throws {@link RedisLoginError}.
 */
export function redisLogin(credentialsDir: string | null | undefined, role: RedisRoleName): Pick<RedisOptions, 'username' | 'password'> {
  if (!credentialsDir) return {};
  const file = redisPasswordFile(credentialsDir, role);
  let password: string;
  try {
    password = readFileSync(file, 'utf8').trim();
  } catch (error) {
    throw new RedisLoginError(
      `cannot read the Redis password of ${REDIS_USERS[role]} from ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  if (password === '') throw new RedisLoginError(`the Redis password file ${file} of ${REDIS_USERS[role]} is empty`);
  return { username: REDIS_USERS[role], password };
}

/**
 * A Redis URL fit to print: the password (and any `password=` query
 * parameter) replaced by `***`. `redis://spark:s3cret@host:6379/0` →
 * `redis://spark:***@host:6379/0`. Socket paths and URLs without one pass unchanged.
 */
export function redactRedisUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not a URL (a socket path) — still hide anything that looks like userinfo.
    return url.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@');
  }
  if (parsed.password) parsed.password = '***';
  else if (parsed.username && !parsed.password && /^rediss?:$/.test(parsed.protocol) && url.includes('@')) {
    // `redis://secret@host`: ioredis reads a lone userinfo as the password.
    parsed.username = '***';
  }
  if (parsed.searchParams.has('password')) parsed.searchParams.set('password', '***');
  return parsed.href.replace(/%2A%2A%2A/g, '***');
}

/** Replaces every Redis URL inside `text` (an error message, a log line) with its {@link redactRedisUrl} form. */
export function redactRedisUrls(text: string): string {
  return text.replace(/rediss?:\/\/[^\s'"`]+/g, (url) => redactRedisUrl(url));
}
