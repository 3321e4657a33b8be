import { fstatSync } from 'node:fs';
import { destination as pinoDestination, pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/** syslog priority (journald's `PRIORITY`) of a pino level: fatal 2, error 3, warn 4, info 6, debug and trace 7. */
export function syslogPriority(level: number): number {
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

/**
 * True when stdout is the journal stream systemd connected (`JOURNAL_STREAM`
 * names its device and inode, sd_journal_stream_fd(3)); a child whose stdout
 * is a pipe inherits the variable but not the stream.
 */
export function stdoutIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const match = /^(\d+):(\d+)$/.exec(env['JOURNAL_STREAM'] ?? '');
  if (!match) return false;
  try {
    const stdout = fstatSync(1);
    return String(stdout.dev) === match[1] && String(stdout.ino) === match[2];
  } catch {
    return false;
  }
}

/**
 * A destination that prefixes each JSON line with `<N>`, the syslog priority
 * of its level, which journald takes as the line's PRIORITY (SyslogLevelPrefix=,
 * on by default) and strips: `journalctl -p warning` then filters.
 */
export function journalDestination(fd = 1): DestinationStream {
  const out = pinoDestination({ fd, sync: true });
  return {
    write(line: string) {
      const level = /^\{"level":(\d+)/.exec(line)?.[1];
      out.write(level === undefined ? line : `<${syslogPriority(Number(level))}>${line}`);
    },
  };
}

/**
 * The service's root logger: pino, JSON lines to stdout (journald keeps them,
 * with each line's priority when stdout is the journal), bound to `{service}`.
 * Level from `SPARK_LOG_LEVEL` (default `info`). Bind a job with
 * `logger.child({ jobId })`.
 */
export function createLogger(service: string, destination?: NodeJS.WritableStream): Logger {
  const options = { level: process.env['SPARK_LOG_LEVEL'] ?? 'info', base: { service } };
  if (destination) return pino(options, destination);
  return stdoutIsJournal() ? pino(options, journalDestination()) : pino(options);
}
