import { readdirSync, realpathSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import type { RecordedRequest } from '@spark/testing';

/** How often a wait in the machine looks again: each look runs a command in it. */
export const POLL_MS = 500;

/** One named check of a machine test and what it found. */
export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

/** A list of checks, each run by {@link Checks.check}, printed as it ends. */
export interface Checks {
  readonly results: CheckResult[];
  /** Runs `body`; what it returns is the check's detail, what it throws its failure. Resolves with whether it passed. */
  check: (name: string, body: () => Promise<string | void>) => Promise<boolean>;
  /** Whether every check so far passed. */
  allPassed: () => boolean;
}

/** A test's timeline: `say` prefixes each line with the seconds since the test started. */
export function timeline(): { say: (line: string) => void; elapsed: () => string } {
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s`;
  return { elapsed, say: (line) => console.log(`[${elapsed()}] ${line}`) };
}

export function checks(say: (line: string) => void): Checks {
  const results: CheckResult[] = [];
  return {
    results,
    allPassed: () => results.every((r) => r.ok),
    check: async (name, body) => {
      const t0 = Date.now();
      try {
        const detail = (await body()) ?? '';
        results.push({ name, ok: true, detail });
        say(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)${detail ? ` — ${detail}` : ''}`);
        return true;
      } catch (error) {
        const detail = (error as Error).message;
        results.push({ name, ok: false, detail });
        say(`FAIL ${name}: ${detail}`);
        return false;
      }
    },
  };
}

/** The requests Lighthouse received about job `uuid`, by name, in order. */
export function requestsFor(requests: RecordedRequest[], uuid: string): string[] {
  return requests.filter((r) => r['uuid'] === uuid).map((r) => String(r.request));
}

/**
 * Directories outside `checkout` that its node_modules entries link to (a
 * git worktree may borrow another checkout's packages): bound at the same
 * path in the machine, so that the links resolve there too.
 */
export function linkedDependencyDirs(checkout: string): string[] {
  const modules = join(checkout, 'node_modules');
  const dirs = new Set<string>();
  for (const name of readdirSync(modules)) {
    const target = dirname(realpathSync(join(modules, name)));
    if (relative(checkout, target).startsWith('..')) dirs.add(target);
  }
  return [...dirs];
}
