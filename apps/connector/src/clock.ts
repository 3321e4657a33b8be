import type { Clock as ServiceClock } from '@spark/service';
import { pause } from '@spark/lighthouse';

/**
 * Time as the connector reads it and waits on it: @spark/service's Clock,
 * with pauses. The wall clock and real timers in production; in unit tests a
 * clock the test moves (so a 10 s lock expiry or a poll interval costs no
 * wait).
 */
export interface Clock extends ServiceClock {
  /** Waits `ms`; resolves true then, or false as soon as `signal` aborts. */
  pause(ms: number, signal: AbortSignal): Promise<boolean>;
}

/** The wall clock and real timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  pause,
};
