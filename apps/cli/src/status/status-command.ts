import { parseArgs } from 'node:util';
import { usageError } from '../commands.js';
import { connectRedis, redactRedisUrl, redactRedisUrls, redisReady } from '@spark/service';
import { WATCH_OPTIONS, watchedHosts } from '../redis-targets.js';
import { collectStatus, type HostStatus } from './collect-status.js';
import { formatStatus } from './format-status.js';
import { assessHealth, DEFAULT_STUCK_LIMITS, STATUS_EXIT, worstCode, type HealthProblem } from './health.js';

/** Where a CLI command writes. */
export interface StatusIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Exit code when a host's Redis cannot be reached. */
export const EXIT_UNAVAILABLE = STATUS_EXIT.redisUnreachable;

/** A host's health: its exit code ({@link STATUS_EXIT}) and what is wrong, worst first. */
export interface HostHealth {
  exitCode: number;
  problems: HealthProblem[];
}

/** A host whose Redis could not be read: which, and why. */
export interface UnreachableHost {
  redis: string;
  prefix: string;
  /** Why it could not be read. */
  error: string;
  /** What could not be read: everything. */
  unreadable: string[];
  health: HostHealth;
}

/** One host of `spark status --json`: what was read and its health, or why nothing could be read. */
export type HostReport = (HostStatus & { health: HostHealth }) | UnreachableHost;

/**
 * `spark status [--config FILE] [--redis [LABEL=]URL]… [--prefix P] [--stuck-after S] [--json]`:
 * one section per host; `--redis` (repeatable) watches other hosts' Redis,
 * with the config's prefix unless `--prefix` is given. Exits with
 * {@link STATUS_EXIT}'s code for the worst problem over all hosts (health.ts
 * says which wins), 0 when all are healthy.
 */
export async function statusCommand(argv: string[], io: StatusIo): Promise<number> {
  let values: {
    config?: string | undefined;
    redis?: string[] | undefined;
    prefix?: string | undefined;
    json?: boolean | undefined;
    'stuck-after'?: string | undefined;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        ...WATCH_OPTIONS,
        json: { type: 'boolean' },
        'stuck-after': { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    return usageError(io, 'status', (error as Error).message);
  }
  const limits = { ...DEFAULT_STUCK_LIMITS };
  if (values['stuck-after'] !== undefined) {
    const seconds = Number(values['stuck-after']);
    if (!Number.isFinite(seconds) || seconds <= 0) {
      return usageError(io, 'status', `--stuck-after: expected seconds > 0, got ${JSON.stringify(values['stuck-after'])}`);
    }
    limits.stuckAfterMs = seconds * 1000;
  }
  const watched = watchedHosts(values, io.stderr);
  if (typeof watched === 'number') return watched;
  const reports: HostReport[] = [];
  for (const { label, url, prefix, login } of watched) {
    const shown = redactRedisUrl(url);
    const name = watched.length > 1 ? `${label} ${shown}` : shown;
    const redis = connectRedis(url, 'producer', {
      ...login,
      retryStrategy: () => null,
      connectTimeout: 3_000,
    });
    redis.on('error', () => {});
    try {
      await redisReady(redis, 5_000);
      const host = await collectStatus(redis, name, prefix);
      const problems = assessHealth(host, limits);
      reports.push({ ...host, health: { exitCode: worstCode(problems.map((p) => p.code)), problems } });
    } catch (error) {
      const message = redactRedisUrls((error as Error).message);
      io.stderr.write(`spark status: cannot read ${shown}: ${message}\n`);
      reports.push({
        redis: name,
        prefix,
        error: message,
        unreadable: [`${shown}: ${message}`],
        health: {
          exitCode: STATUS_EXIT.redisUnreachable,
          problems: [{ code: STATUS_EXIT.redisUnreachable, message: `Redis: cannot read ${shown}: ${message}` }],
        },
      });
    } finally {
      redis.disconnect();
    }
  }
  const code = worstCode(reports.map((report) => report.health.exitCode));
  io.stdout.write(values.json ? `${JSON.stringify(reports, null, 2)}\n` : formatStatus(reports));
  return code;
}
