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

/** How {@link createLogger} makes a logger. */
export interface LoggerOptions {
  /** Where the JSON lines go (default stdout, with journal priorities when stdout is the journal). */
  destination?: NodeJS.WritableStream;
  /** pino level name (default `SPARK_LOG_LEVEL`, else `info`); the services check it first (service-main.ts). */
  level?: string;
}

// Every child of a logger made here, held weakly: pino copies the level into a
// child when it is made, so a level set on the root later must be set on each
// live child too (setLogLevel). A child that is collected leaves the set.
const families = new WeakMap<Logger, Set<WeakRef<Logger>>>();
const forget = new FinalizationRegistry<{ children: Set<WeakRef<Logger>>; ref: WeakRef<Logger> }>(({ children, ref }) =>
  children.delete(ref),
);

/**
 * The service's root logger: pino, JSON lines to stdout (journald keeps them,
 * with each line's priority when stdout is the journal), bound to `{service}`.
 * Level from `options.level`, else `SPARK_LOG_LEVEL`, else `info`; change it
 * with {@link setLogLevel}. Bind a job with `logger.child({ jobId })`.
 */
export function createLogger(service: string, options: NodeJS.WritableStream | LoggerOptions = {}): Logger {
  const { destination, level } = 'write' in options ? { destination: options, level: undefined } : options;
  const children = new Set<WeakRef<Logger>>();
  const pinoOptions = {
    level: level ?? process.env['SPARK_LOG_LEVEL'] ?? 'info',
    base: { service },
    onChild: (child: Logger) => {
      const ref = new WeakRef(child);
      children.add(ref);
      forget.register(child, { children, ref });
    },
  };
  const logger = destination
    ? pino(pinoOptions, destination)
    : stdoutIsJournal()
      ? pino(pinoOptions, journalDestination())
      : pino(pinoOptions);
  families.set(logger, children);
  return logger;
}

/** Sets the level of a logger from {@link createLogger} and of every child of it still in use. */
export function setLogLevel(logger: Logger, level: string): void {
  logger.level = level;
  for (const ref of families.get(logger) ?? []) {
    const child = ref.deref();
    if (child) child.level = level;
  }
}
