import { hostname } from 'node:os';
import type { Logger, Redis } from '@spark/service';
import { connectorLockKey } from '@spark/protocol';
import { pause } from '@spark/lighthouse';

/** Lifetime of the lock in ms: a connector that died releases it this long after its last renewal. */
export const CONNECTOR_LOCK_TTL_MS = 15_000;
/** How often the lock is renewed, and how often a waiting connector tries to take it, in ms. */
export const CONNECTOR_LOCK_RENEW_MS = 5_000;

/** Renews the lock only while it is still ours (GET and PEXPIRE in one step). */
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
/** Releases the lock only while it is still ours. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

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
  redis: Redis,
  prefix: string,
  logger: Logger,
  signal: AbortSignal,
  onLost: (error: Error) => void,
): Promise<ConnectorLock | null> {
  const key = connectorLockKey(prefix);
  const me = `${hostname()}:${process.pid}`;
  let told = false;
  for (;;) {
    if ((await redis.set(key, me, 'PX', CONNECTOR_LOCK_TTL_MS, 'NX')) === 'OK') break;
    if (!told) {
      const holder = await redis.get(key);
      logger.warn(
        `another connector (${holder ?? 'just gone'}) runs on this Redis; waiting until it stops (one connector per host keeps reports in order)`,
      );
      told = true;
    }
    if (!(await pause(CONNECTOR_LOCK_RENEW_MS, signal))) return null;
  }
  if (told) logger.info('the other connector stopped: taking over');
  const timer = setInterval(() => {
    redis
      .eval(RENEW, 1, key, me, CONNECTOR_LOCK_TTL_MS)
      .then((renewed) => {
        if (renewed !== 1) onLost(new Error(`another process took the connector lock ${key}`));
      })
      .catch((err: unknown) => logger.warn({ err }, 'cannot renew the connector lock (Redis); trying again'));
  }, CONNECTOR_LOCK_RENEW_MS);
  return {
    async release() {
      clearInterval(timer);
      await redis.eval(RELEASE, 1, key, me).catch(() => undefined);
    },
  };
}
