import { setTimeout as sleep } from 'node:timers/promises';

/** Exponential backoff with jitter, in ms. */
export interface Backoff {
  /** First delay (default 500 ms). */
  initialMs: number;
  /** Longest delay (default 30 s). */
  maxMs: number;
}

/** Default backoff while Lighthouse is unreachable. */
export const DEFAULT_BACKOFF: Backoff = { initialMs: 500, maxMs: 30_000 };

/** The delay before retry number `attempt` (0-based): doubling up to the cap, with ±50 % jitter so workers do not retry in step. */
export function backoffDelay(backoff: Backoff, attempt: number): number {
  const base = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(base * (0.5 + Math.random()));
}

/** Sleeps `ms`; resolves early (false) when `signal` aborts, true otherwise. */
export async function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}
