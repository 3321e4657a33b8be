/**
 * The time as a service reads it: the wall clock in production, a clock the
 * test sets by hand in unit tests (so a test says what time it is, and waits
 * for none).
 */
export interface Clock {
  /** ms since the epoch. */
  now(): number;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() };
