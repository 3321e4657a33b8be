import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * The service's root logger: pino, JSON lines to stdout (journald keeps them),
 * bound to `{service}`. Level from `SPARK_LOG_LEVEL` (default `info`). Bind a
 * job with `logger.child({ jobId })`.
 */
export function createLogger(service: string, destination?: NodeJS.WritableStream): Logger {
  const options = { level: process.env['SPARK_LOG_LEVEL'] ?? 'info', base: { service } };
  return destination ? pino(options, destination) : pino(options);
}
