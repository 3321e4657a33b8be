import type { Logger } from 'pino';
import { EX_SOFTWARE } from '@spark/config';

/** One step of a service's `close()`: a name for the logs and what to do. */
export type CloseStep = readonly [name: string, run: () => unknown];

/**
 * Runs every step in order, each even if an earlier one failed (BullMQ's
 * `Worker.close` is the model), and logs each failure. Resolves to the errors.
 */
export async function runCloseSteps(steps: readonly CloseStep[], logger: Logger): Promise<Error[]> {
  const errors: Error[] = [];
  for (const [name, run] of steps) {
    try {
      await run();
    } catch (error) {
      const err = error instanceof Error ? error : new Error(String(error));
      logger.error({ err, step: name }, `shutdown step "${name}" failed; continuing with the next`);
      errors.push(err);
    }
  }
  return errors;
}

/** Makes `close` safe to call twice: every call gets the first call's promise. */
export function once(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | null = null;
  return () => (closing ??= close());
}

/** Options of {@link installShutdown}. */
export interface ShutdownOptions {
  /** Hard limit in ms for `close()` after SIGTERM/SIGINT before the process exits 1 (default 30 s). */
  timeoutMs?: number;
}

/** ioredis's error for a command on a connection that was closed (by `quit()` or `disconnect()`). */
function isClosedConnection(error: unknown): boolean {
  return error instanceof Error && error.message === 'Connection is closed.';
}

/** Set once a signal started the shutdown ({@link installShutdown}). */
let shuttingDown = false;
let uncaughtHandled = false;

/** How {@link exitOnUncaught} reports: the error and a message saying what happens. */
export type UncaughtReport = (error: unknown, message: string) => void;

/**
 * An uncaught exception or unhandled rejection is reported (`fatal`) and
 * exits 70 (EX_SOFTWARE), so systemd restarts the service: never "log and
 * carry on". The one exception is a Redis command failing because its
 * connection is closed once a signal started the shutdown: `close()` quit the
 * connections while a library (BullMQ starting its worker, say) still had a
 * command to send, and nothing waits for its answer any more. That is
 * reported as a warning (`warn`) and the shutdown goes on. Installed once per
 * process: later calls do nothing.
 */
export function exitOnUncaught(fatal: UncaughtReport, warn: UncaughtReport = fatal): void {
  if (uncaughtHandled) return;
  uncaughtHandled = true;
  const handler = (kind: string) => (error: unknown) => {
    if (shuttingDown && isClosedConnection(error)) {
      warn(error, `${kind} while shutting down, from a Redis connection the shutdown closed: ignored`);
      return;
    }
    fatal(error, `${kind}: exiting so that the service manager restarts the service`);
    process.exit(EX_SOFTWARE);
  };
  process.on('uncaughtException', handler('uncaught exception'));
  process.on('unhandledRejection', handler('unhandled promise rejection'));
}

/**
 * SIGTERM and SIGINT call `close()` once, then exit 0 (1 if it failed or took
 * longer than the timeout); a second signal exits at once. Uncaught errors
 * exit 70 ({@link exitOnUncaught}, installed here unless the service's start
 * did already).
 */
export function installShutdown(logger: Logger, close: () => Promise<void>, options: ShutdownOptions = {}): void {
  const timeoutMs = options.timeoutMs ?? 30_000;
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    signalled = true;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down: no new work is taken; waiting for work in flight');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown took too long; exiting');
      process.exit(1);
    }, timeoutMs);
    timer.unref();
    close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  exitOnUncaught(
    (error, message) => logger.fatal({ err: error }, message),
    (error, message) => logger.warn({ err: error }, message),
  );
}
