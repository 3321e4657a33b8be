import { parseArgs } from 'node:util';
import { usageError } from '../commands.js';
import { EXIT_CONFIG } from '@spark/config';
import { connectRedis, redactRedisUrl, redactRedisUrls, redisReady } from '@spark/service';
import { WATCH_OPTIONS, watchedHosts } from '../redis-targets.js';
import { collectStatus, type HostStatus } from './collect-status.js';
import { formatStatus } from './format-status.js';

/** Where a CLI command writes. */
export interface StatusIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Exit code when a host's Redis cannot be reached. */
export const EXIT_UNAVAILABLE = 69;

/**
 * `spark status [--config FILE] [--redis [LABEL=]URL]… [--prefix P] [--json]`: one
 * section per host; `--redis` (repeatable) watches other hosts' Redis, with
 * the config's prefix unless `--prefix` is given.
 */
export async function statusCommand(argv: string[], io: StatusIo): Promise<number> {
  let values: {
    config?: string | undefined;
    redis?: string[] | undefined;
    prefix?: string | undefined;
    json?: boolean | undefined;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ...WATCH_OPTIONS,
        json: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (error) {
    return usageError(io, 'status', (error as Error).message);
  }
  const watched = watchedHosts(values, io.stderr);
  if (!watched) return EXIT_CONFIG;
  const hosts: HostStatus[] = [];
  let code = 0;
  for (const { label, url, prefix, login } of watched) {
    const shown = redactRedisUrl(url);
    const redis = connectRedis(url, 'producer', {
      ...login,
      retryStrategy: () => null,
      connectTimeout: 3_000,
    });
    redis.on('error', () => {});
    try {
      await redisReady(redis, 5_000);
      hosts.push(await collectStatus(redis, watched.length > 1 ? `${label} ${shown}` : shown, prefix));
    } catch (error) {
      io.stderr.write(`spark status: cannot read ${shown}: ${redactRedisUrls((error as Error).message)}\n`);
      code = EXIT_UNAVAILABLE;
    } finally {
      redis.disconnect();
    }
  }
  io.stdout.write(values.json ? `${JSON.stringify(hosts, null, 2)}\n` : formatStatus(hosts));
  return code;
}
