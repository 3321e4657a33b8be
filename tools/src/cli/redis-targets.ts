import { hostname } from 'node:os';

/** One host's Redis named on the command line. */
export interface RedisTarget {
  /** Section name: the `LABEL=` part, else this host's name for the first and `host-N` after. */
  label: string;
  url: string;
}

/**
 * Reads `--redis [LABEL=]URL` values (`hydrogen=redis://10.0.0.5:6379`).
 * Labels are made unique by numbering.
 */
export function parseRedisTargets(entries: readonly string[]): RedisTarget[] {
  const targets = entries.map((entry) => {
    const match = /^([A-Za-z0-9._-]+)=(.+)$/.exec(entry);
    return match ? { label: match[1] as string, url: match[2] as string } : { label: hostname(), url: entry };
  });
  const seen = new Map<string, number>();
  return targets.map((target) => {
    const count = (seen.get(target.label) ?? 0) + 1;
    seen.set(target.label, count);
    return count === 1 ? target : { ...target, label: `${target.label}-${count}` };
  });
}
