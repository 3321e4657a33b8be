import { hostname } from 'node:os';
import type { Logger, Redis } from '@spark/service';
import { connectorLockKey } from '@spark/protocol';
import type { Clock } from './clock.js';

/** Lifetime of the lock in ms: a connector that died releases it this long after its last renewal. */
export const CONNECTOR_LOCK_TTL_MS = 15_000;
/** How often the lock is renewed, and how often a waiting connector tries to take it, in ms. */
export const CONNECTOR_LOCK_RENEW_MS = 5_000;

/** Renews the lock only while it is still ours (GET and PEXPIRE in one step). */
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
/** Releases the lock only while it is still ours. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/**
 * A lock that expires unless renewed, held under a holder's name. Each
 * method is one atomic step; all reject on a Redis error.
 */
export interface LockStore {
  /** Where the lock is, for log lines (the Redis key). */
  readonly name: string;
  /** Takes the lock for `ttlMs` when no one holds it; true when taken. */
  take(holder: string, ttlMs: number): Promise<boolean>;
  /** Who holds the lock, or null. */
  holder(): Promise<string | null>;
  /** Extends the lock to `ttlMs` from now only while `holder` holds it; true when renewed. */
  renew(holder: string, ttlMs: number): Promise<boolean>;
  /** Releases the lock only while `holder` holds it. */
  release(holder: string): Promise<void>;
}

/** The connector lock in Redis under `prefix` (one key with an expiry). */
export function redisConnectorLock(redis: Redis, prefix: string): LockStore {
  const key = connectorLockKey(prefix);
  return {
    name: key,
    take: async (holder, ttlMs) => (await redis.set(key, holder, 'PX', ttlMs, 'NX')) === 'OK',
    holder: () => redis.get(key),
    renew: async (holder, ttlMs) => (await redis.eval(RENEW, 1, key, holder, ttlMs)) === 1,
    async release(holder) {
      await redis.eval(RELEASE, 1, key, holder);
    },
  };
}

/** The held lock. */
export interface ConnectorLock {
  /** Stops renewing and releases the lock. */
  release(): Promise<void>;
}

/**
 * Makes this the one connector of the host's Redis: the report relay keeps
 * reports in order only because one connector relays them, and two would each
 * ask Lighthouse for jobs. Waits (logging once who holds it) until the lock is
 * free or `signal` aborts (then resolves null); once held, renews it and calls
 * `onLost` if another process took it (this process must stop: systemd starts it again).
 */
export async function acquireConnectorLock(
  store: LockStore,
  clock: Clock,
  logger: Logger,
  signal: AbortSignal,
  onLost: (error: Error) => void,
  me = `${hostname()}:${process.pid}`,
): Promise<ConnectorLock | null> {
  let told = false;
  for (;;) {
    if (await store.take(me, CONNECTOR_LOCK_TTL_MS)) break;
    if (!told) {
      const holder = await store.holder();
      logger.warn(
        `another connector (${holder ?? 'just gone'}) runs on this Redis; waiting until it stops (one connector per host keeps reports in order)`,
      );
      told = true;
    }
    if (!(await clock.pause(CONNECTOR_LOCK_RENEW_MS, signal))) return null;
  }
  if (told) logger.info('the other connector stopped: taking over');
  const stop = new AbortController();
  void (async () => {
    while (await clock.pause(CONNECTOR_LOCK_RENEW_MS, stop.signal)) {
      await store.renew(me, CONNECTOR_LOCK_TTL_MS).then(
        (renewed) => {
          if (!renewed) onLost(new Error(`another process took the connector lock ${store.name}`));
        },
        (err: unknown) => logger.warn({ err }, 'cannot renew the connector lock (Redis); trying again'),
      );
    }
  })();
  return {
    async release() {
      stop.abort();
      await store.release(me).catch(() => undefined);
    },
  };
}
