/** A pause that ends early when something worth asking Lighthouse about happened. */
export interface Waker {
  /** Ends the current (or the next) wakeable pause at once; several calls before it ends count as one. */
  wake(): void;
  /** Sleeps `ms`; resolves true early on {@link Waker.wake}, false when `signal` aborts. */
  pause(ms: number, signal: AbortSignal): Promise<boolean>;
}

/**
 * Creates a {@link Waker}. A wake that comes while no pause runs is kept for the
 * next one, so a slot freed while a request is on the wire is not missed; the
 * fetch loop still sends one request at a time.
 */
export function createWaker(): Waker {
  let pending = false;
  let wakeUp: (() => void) | null = null;
  return {
    wake() {
      pending = true;
      wakeUp?.();
    },
    pause(ms, signal) {
      if (signal.aborted) return Promise.resolve(false);
      if (pending) {
        pending = false;
        return Promise.resolve(true);
      }
      return new Promise((resolve) => {
        const done = (value: boolean) => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          wakeUp = null;
          pending = false;
          resolve(value);
        };
        const onAbort = () => done(false);
        const timer = setTimeout(() => done(true), ms);
        signal.addEventListener('abort', onAbort, { once: true });
        wakeUp = () => done(true);
      });
    },
  };
}
