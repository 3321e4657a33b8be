import { setTimeout as sleep } from 'node:timers/promises';

/** What a {@link waitFor} probe returns: the awaited value, or `undefined`, `null` or `false` while it is not there yet. */
export type Probe<T> = T | undefined | null | false;

/** How long {@link waitFor} waits and how often it looks. */
export interface WaitOptions {
  /** Gives up after this many ms. */
  timeoutMs: number;
  /** ms between two probes (default 50). */
  intervalMs?: number;
  /** Read when it gives up and added to the error: what was there instead. */
  detail?: () => string | Promise<string>;
}

/**
 * Probes until `probe` returns something other than `undefined`, `null` or
 * `false`, and resolves with it: a condition (`() => queue.isPaused()`) or a
 * value to wait for (`() => queue.getJob(id)`). After `timeoutMs` it rejects
 * with `timed out after <s> s waiting for <what>` (and the detail, if any).
 * A probe that throws ends the wait with its error.
 */
export async function waitFor<T>(what: string, probe: () => Probe<T> | Promise<Probe<T>>, options: WaitOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) {
      const detail = options.detail ? `:\n${await options.detail()}` : '';
      throw new Error(`timed out after ${options.timeoutMs / 1000} s waiting for ${what}${detail}`);
    }
    await sleep(options.intervalMs ?? 50);
  }
}

/**
 * Resolves with what `promise` resolves to (an awaited event, such as a fake
 * queue's job being added), or rejects with `timed out after <s> s waiting for
 * <what>` once `timeoutMs` have passed: a guard against waiting for ever.
 */
export async function within<T>(what: string, promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
