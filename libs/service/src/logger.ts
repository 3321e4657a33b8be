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

/** How log lines are written: `text` (level name, message, `key=value` fields) or pino's JSON lines. */
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export function isLogFormat(value: string): value is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(value);
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** A field's value in a text line: as is when it is one plain word, else JSON (quoted, escaped, on one line). */
function fieldValue(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=\\]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  return JSON.stringify(value);
}

/**
 * One of pino's JSON records as a text line: `WARN message key=value …`. The
 * time and the service are left out (journald records both); an error is
 * its type and message (`err=Error:…`); a message with line breaks stays on
 * one line (`\n`), so that journald keeps it one entry.
 */
export function formatLogRecord(record: Record<string, unknown>): string {
  const { level, time, service, msg, err, ...fields } = record;
  void time;
  void service;
  const name = LEVEL_NAMES[Number(level)] ?? `LEVEL${String(level)}`;
  const text = typeof msg === 'string' ? msg.replaceAll('\n', '\\n') : msg === undefined ? '' : fieldValue(msg);
  const parts = [`${name} ${text}`];
  for (const [key, value] of Object.entries(fields)) parts.push(`${key}=${fieldValue(value)}`);
  if (err !== undefined) {
    const error = typeof err === 'object' && err !== null ? (err as { type?: unknown; message?: unknown }) : null;
    const type = typeof error?.type === 'string' ? error.type : 'Error';
    const message = typeof error?.message === 'string' ? error.message : JSON.stringify(err);
    parts.push(`err=${fieldValue(`${type}: ${message}`)}`);
  }
  return parts.join(' ');
}

/**
 * Where a service's log lines go on `fd`: pino's JSON lines, or text lines
 * ({@link formatLogRecord}); with `priority`, each line starts with `<N>`,
 * the syslog priority of its level, which journald takes as the line's
 * PRIORITY (SyslogLevelPrefix=, on by default) and strips: `journalctl -p
 * warning` then filters.
 */
export function logDestination(format: LogFormat, priority: boolean, fd = 1): DestinationStream {
  const out = pinoDestination({ fd, sync: true });
  return {
    write(line: string) {
      const level = /^\{"level":(\d+)/.exec(line)?.[1];
      const prefix = priority && level !== undefined ? `<${syslogPriority(Number(level))}>` : '';
      out.write(`${prefix}${format === 'json' ? line : `${formatLogRecord(JSON.parse(line) as Record<string, unknown>)}\n`}`);
    },
  };
}

/** How {@link createLogger} makes a logger. */
export interface LoggerOptions {
  /** Where the JSON lines go (default stdout, see {@link createLogger}). */
  destination?: NodeJS.WritableStream;
  /** Lines on stdout: default `SPARK_LOG_FORMAT`, else `text` when stdout is the journal and `json` otherwise. */
  format?: LogFormat;
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
 * The service's root logger: pino, bound to `{service}`, writing to stdout.
 * When stdout is the journal, each line carries its priority and is text
 * (`WARN message key=value …`: journald adds the time and the unit); on a
 * pipe or a file, pino's JSON lines. `SPARK_LOG_FORMAT` (`text` or `json`)
 * chooses the other, e.g. JSON in the journal for a log shipper.
 * Level from `options.level`, else `SPARK_LOG_LEVEL`, else `info`; change it
 * with {@link setLogLevel}. Bind a job with `logger.child({ jobId })`.
 */
export function createLogger(service: string, options: NodeJS.WritableStream | LoggerOptions = {}): Logger {
  const { destination, level, format } = 'write' in options ? { destination: options, level: undefined, format: undefined } : options;
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
  const journal = stdoutIsJournal();
  const envFormat = process.env['SPARK_LOG_FORMAT'];
  const chosen = format ?? (envFormat !== undefined && isLogFormat(envFormat) ? envFormat : journal ? 'text' : 'json');
  const logger = destination
    ? pino(pinoOptions, destination)
    : journal || chosen === 'text'
      ? pino(pinoOptions, logDestination(chosen, journal))
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
