import { Redis, type RedisOptions } from 'ioredis';

export { Redis } from 'ioredis';
export type { RedisOptions } from 'ioredis';

/**
 * How a connection is used, as BullMQ's production guide distinguishes them:
 * `worker` connections retry forever (`maxRetriesPerRequest: null`) and queue
 * commands while Redis is away — every connection of the services, whose
 * hand-offs happen while processing a job and must wait for Redis rather than
 * fail the job; `producer` connections fail fast while Redis is down
 * (`enableOfflineQueue: false`), for operator commands that should say so at once.
 */
export type RedisRole = 'worker' | 'producer';

/** Opens a Redis connection from `RedisUrl` (`redis://`, `rediss://`, `unix:///path` or `/path`). */
export function connectRedis(url: string, role: RedisRole, extra: RedisOptions = {}): Redis {
  const roleOptions: RedisOptions =
    role === 'worker' ? { maxRetriesPerRequest: null } : { enableOfflineQueue: false, maxRetriesPerRequest: 1 };
  const options: RedisOptions = {
    ...roleOptions,
    // Reconnect with a capped backoff: a Redis restart must not kill the service.
    retryStrategy: (times) => Math.min(200 * times, 5_000),
    // ioredis would send CLIENT SETINFO (library name and version, Redis 7.2+) on connecting: the
    // services' ACL users may not run it (redis-acl.ts, NO_LISTING), and nothing reads it.
    disableClientInfo: true,
    ...extra,
  };
  const socket = url.startsWith('unix://') ? url.slice('unix://'.length) : url.startsWith('/') ? url : null;
  return socket ? new Redis({ ...options, path: socket }) : new Redis(url, options);
}

/** Thrown by {@link redisReady} when Redis does not answer in time or the connection ends: at start, the service exits 69 (EX_UNAVAILABLE). */
export class RedisUnavailable extends Error {
  override name = 'RedisUnavailable';
}

/**
 * Resolves once the connection is ready for commands (a `producer` connection
 * refuses them before). Rejects after `timeoutMs`, or at once when the
 * connection ends for good (no retry strategy), with the last connection error.
 */
export function redisReady(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    let lastError = '';
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('error', onError);
      redis.off('end', onEnd);
    };
    const onReady = () => {
      cleanup();
      resolve();
    };
    const onError = (error: Error) => {
      lastError = error.message;
    };
    const onEnd = () => {
      cleanup();
      reject(new RedisUnavailable(`Redis connection closed${lastError ? `: ${lastError}` : ''}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new RedisUnavailable(`Redis not ready after ${timeoutMs} ms${lastError ? `: ${lastError}` : ` (status ${redis.status})`}`));
    }, timeoutMs);
    redis.on('ready', onReady);
    redis.on('error', onError);
    redis.on('end', onEnd);
  });
}
