import { pause } from '@spark/lighthouse';

/**
 * Time as the report relay reads it: the wall clock in production, a clock the
 * test moves by hand in unit tests (so a 10 s lock expiry costs no 10 s).
 */
export interface Clock {
  /** ms since the epoch. */
  now(): number;
  /** Waits `ms`; resolves true then, or false as soon as `signal` aborts. */
  pause(ms: number, signal: AbortSignal): Promise<boolean>;
}

/** The wall clock and real timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  pause,
};
