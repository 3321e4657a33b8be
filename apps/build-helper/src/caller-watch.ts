import { fstatSync } from 'node:fs';
import { parentOf } from './process-tree.js';

/** How often the helper checks that its caller still runs, in ms. */
const CALLER_POLL_MS = 500;

/**
 * Resolves with a reason when the run must stop: SIGTERM, SIGINT or SIGHUP to
 * the helper (sudo relays the builder's), its parent or — under sudo — sudo's
 * parent (the builder) gone, or its stdin closed when that is a pipe or socket.
 * A second signal is not needed: the first already starts TERM → grace → KILL.
 */
export function callerGone(underSudo: boolean): Promise<string> {
  return new Promise((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => resolve(`received ${signal}`));
    const parent = process.ppid;
    const grandparent = underSudo ? parentOf(parent) : 0;
    const timer = setInterval(() => {
      if (process.ppid !== parent || (underSudo && parentOf(parent) !== grandparent)) resolve('its caller is gone');
    }, CALLER_POLL_MS);
    timer.unref();
    let stdin;
    try {
      stdin = fstatSync(0);
    } catch {
      stdin = null;
    }
    if (stdin && (stdin.isFIFO() || stdin.isSocket())) {
      process.stdin.on('end', () => resolve('its stdin was closed'));
      process.stdin.on('error', () => resolve('its stdin failed'));
      process.stdin.resume();
      process.stdin.unref?.();
    }
  });
}
