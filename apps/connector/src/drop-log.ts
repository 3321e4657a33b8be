import type { Logger } from '@spark/service';

/** Dropped reports logged one by one per sender in each window; the rest are counted. */
export const DROPS_LOGGED_PER_WINDOW = 20;
const WINDOW_MS = 60_000;

/** How much a dropped report says about its sender: expected (`warn`) or a sign of a broken or hostile sender (`error`). */
export type DropLevel = 'warn' | 'error';

/**
 * The relay's log of dropped reports. A sender that floods its queue with
 * reports the relay drops must not flood the journal too: per sender, the
 * first {@link DROPS_LOGGED_PER_WINDOW} drops of a minute are logged one by
 * one, and one line at the end of the minute counts the others.
 */
export interface DropLog {
  /** Logs `message` about a dropped report of `sender` through `log`, or counts it. */
  drop(sender: string, level: DropLevel, log: Logger, message: string): void;
  /** Logs the counts not logged yet and stops the timers. */
  close(): void;
}

interface Window {
  logged: number;
  unlogged: number;
  level: DropLevel;
  timer: NodeJS.Timeout;
}

export function dropLog(logger: Logger, windowMs = WINDOW_MS): DropLog {
  const windows = new Map<string, Window>();
  const end = (sender: string) => {
    const window = windows.get(sender);
    if (!window) return;
    clearTimeout(window.timer);
    windows.delete(sender);
    if (window.unlogged > 0) {
      logger[window.level](
        { from: sender, dropped: window.unlogged },
        `dropped ${window.unlogged} more reports from the ${sender}'s report queue in the last ${Math.round(windowMs / 1000)} s (not logged one by one)`,
      );
    }
  };
  return {
    drop(sender, level, log, message) {
      let window = windows.get(sender);
      if (!window) {
        window = { logged: 0, unlogged: 0, level: 'warn', timer: setTimeout(() => end(sender), windowMs).unref() };
        windows.set(sender, window);
      }
      if (window.logged < DROPS_LOGGED_PER_WINDOW) {
        window.logged += 1;
        log[level](message);
        return;
      }
      window.unlogged += 1;
      if (level === 'error') window.level = 'error';
    },
    close() {
      for (const sender of [...windows.keys()]) end(sender);
    },
  };
}
