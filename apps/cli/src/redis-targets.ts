import { hostname } from 'node:os';
import { DEFAULT_CONFIG_FILE, EX_NOINPUT, loadConfigOrExitCode } from '@spark/config';
import type { RedisOptions, RedisRoleName } from '@spark/service';
import { cliRedisLogin } from './cli-config.js';

/** One host's Redis named on the command line. */
export interface RedisTarget {
  /** Section name: the `LABEL=` part, else this host's name for the first and `host-N` after. */
  label: string;
  url: string;
}

/**
 * Reads `--redis [LABEL=]URL` values (`hydrogen=redis://10.0.0.5:6379`).
 * Labels are made unique by numbering.
 */
export function parseRedisTargets(entries: readonly string[]): RedisTarget[] {
  const targets = entries.map((entry) => {
    const match = /^([A-Za-z0-9._-]+)=(.+)$/.exec(entry);
    return match ? { label: match[1] as string, url: match[2] as string } : { label: hostname(), url: entry };
  });
  const seen = new Map<string, number>();
  return targets.map((target) => {
    const count = (seen.get(target.label) ?? 0) + 1;
    seen.set(target.label, count);
    return count === 1 ? target : { ...target, label: `${target.label}-${count}` };
  });
}

/** `parseArgs` options of the commands that watch one or several hosts' Redis. */
export const WATCH_OPTIONS = {
  config: { type: 'string', short: 'c' },
  redis: { type: 'string', multiple: true },
  prefix: { type: 'string' },
} as const;

/** A host to watch: its Redis and the BullMQ prefix of its queues. */
export interface WatchedHost extends RedisTarget {
  prefix: string;
  /** How to log in: this host's operator (or admin) from `RedisCredentialsDir`, or what the URL says. */
  login: Pick<RedisOptions, 'username' | 'password'>;
}

/**
 * The hosts `--redis` names (default: this host's `RedisUrl`, logged in as
 * `role` when `RedisCredentialsDir` is set; a `--redis` URL carries its own
 * credentials), with `--prefix` (default: `QueuePrefix`). Null when the config
 * was needed and is unusable (its problems are written to `stderr`).
 */
export function watchedHosts(
  values: { config?: string | undefined; redis?: string[] | undefined; prefix?: string | undefined },
  stderr: NodeJS.WritableStream,
  role: RedisRoleName = 'operator',
): WatchedHost[] | number {
  let urls = values.redis ?? [];
  let prefix = values.prefix;
  let login: WatchedHost['login'] = {};
  if (urls.length === 0 || prefix === undefined) {
    const config = loadConfigOrExitCode(values.config ?? DEFAULT_CONFIG_FILE, stderr);
    if (typeof config === 'number') return config;
    if (urls.length === 0) {
      urls = [config.redisUrl];
      const local = cliRedisLogin(config, role, stderr);
      if (!local) return EX_NOINPUT;
      login = local;
    }
    prefix ??= config.queuePrefix;
  }
  const hostPrefix = prefix;
  return parseRedisTargets(urls).map((target) => ({ ...target, prefix: hostPrefix, login }));
}
