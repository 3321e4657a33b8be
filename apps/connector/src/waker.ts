import type { Clock } from './clock.js';

/** A pause that ends early when something worth asking Lighthouse about happened. */
export interface Waker {
  /** Ends the current (or the next) wakeable pause at once; several calls before it ends count as one. */
  wake(): void;
  /** Sleeps `ms` on the clock; resolves true early on {@link Waker.wake}, false when `signal` aborts. */
  pause(ms: number, signal: AbortSignal): Promise<boolean>;
}

/**
 * Creates a {@link Waker} whose pauses run on `clock`. A wake that comes while
 * no pause runs is kept for the next one, so a slot freed while a request is
 * on the wire is not missed; the fetch loop still sends one request at a time.
 */
export function createWaker(clock: Clock): Waker {
  let pending = false;
  let wakeUp: (() => void) | null = null;
  return {
    wake() {
      pending = true;
      wakeUp?.();
    },
    async pause(ms, signal) {
      if (signal.aborted) return false;
      if (pending) {
        pending = false;
        return true;
      }
      // The clock's pause ends at its time, or when this controller aborts: on a wake or on `signal`.
      const ended = new AbortController();
      let woken = false;
      const onAbort = () => ended.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      wakeUp = () => {
        woken = true;
        ended.abort();
      };
      try {
        return (await clock.pause(ms, ended.signal)) || woken;
      } finally {
        signal.removeEventListener('abort', onAbort);
        wakeUp = null;
        pending = false;
      }
    },
  };
}
