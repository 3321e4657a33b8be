import { realpathSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checks, timeline, type Checks } from './checks.js';
import { bootMachine, type BootOptions, type Machine } from './machine.js';

/** This checkout, as the machine tests bind it or build it. */
export const checkout = realpathSync(fileURLToPath(new URL('../../', import.meta.url)));

/** The programs a checkout-bound machine runs from `apps/<app>/dist`. */
const APPS = ['cli', 'connector', 'builder', 'signer', 'uploader', 'build-helper'];

/** What a machine test's body works with: its checks, its work directory, its machine. */
export interface MachineTest extends Checks {
  /** Prints a line of the timeline (seconds since the test started). */
  say: (line: string) => void;
  /** The test's work directory on the host, removed at the end. */
  work: string;
  /** `work/share`, made empty: what the test binds into the machine to hand it files. */
  share: string;
  /** Adds a step to run at the end (after the machine is off), the last added first; its failure is ignored. */
  cleanup: (step: () => Promise<unknown> | void) => void;
  /** Boots the machine (its console's last lines in the error when it does not come up); the end powers it off. */
  boot: (options: Omit<BootOptions, 'onOutput'>) => Promise<Machine>;
}

/** Options of {@link machineTest}. */
export interface MachineTestOptions {
  /** Why the test needs root, printed when it does not run as root. */
  root: string;
  /** Whether the machine runs this checkout's built `apps/<app>/dist`: the test stops when one is missing. */
  dist: boolean;
}

/**
 * Runs `npm run test:<name>`'s body and exits the process with its code: 2
 * when not root or (with `dist`) a program is not built; otherwise the
 * body's (0 when every check passed), or 1 when it throws. Around the body:
 * a work directory `/tmp/spark-<name>-test-…` with an empty `share`; at the
 * end, also on SIGINT, SIGTERM or an uncaught exception, the spark units'
 * journal when a check failed, the machine powered off, the cleanup steps
 * and the work directory removed. Prints `test:<name>: P of N checks
 * passed in T s` last.
 */
export async function machineTest(name: string, options: MachineTestOptions, body: (t: MachineTest) => Promise<number>): Promise<never> {
  const { say, elapsed } = timeline();
  const list = checks(say);
  const code = await frame(name, options, say, list, body).catch((error: unknown) => {
    console.error(error);
    return 1;
  });
  const passed = list.results.filter((r) => r.ok).length;
  console.log(`\ntest:${name}: ${passed} of ${list.results.length} checks passed in ${elapsed().trim()}`);
  process.exit(code);
}

async function frame(
  name: string,
  options: MachineTestOptions,
  say: (line: string) => void,
  list: Checks,
  body: (t: MachineTest) => Promise<number>,
): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error(`test:${name}: run as root (${options.root})`);
    return 2;
  }
  if (options.dist) {
    for (const app of APPS) {
      if (!(await readFile(join(checkout, 'apps', app, 'dist', 'main.js')).catch(() => null))) {
        console.error(`test:${name}: apps/${app}/dist is missing: build first (npm run build)`);
        return 2;
      }
    }
  }
  const work = await mkdtemp(`/tmp/spark-${name}-test-`);
  const share = join(work, 'share');
  await mkdir(share, { recursive: true });
  const steps: (() => Promise<unknown> | void)[] = [];
  let machine: Machine | null = null;
  // Interrupted: power the machine off and remove what we made before exiting.
  const emergency = (why: string) => {
    say(`${why}: cleaning up`);
    void (async () => {
      await machine?.powerOff().catch(() => undefined);
      for (const step of steps.reverse()) await Promise.resolve(step()).catch(() => undefined);
      await rm(work, { recursive: true, force: true });
      process.exit(130);
    })();
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => emergency(signal));
  process.once('uncaughtException', (error) => {
    console.error(error);
    emergency('uncaught exception');
  });
  const boot = async (bootOptions: Omit<BootOptions, 'onOutput'>) => {
    let consoleTail = '';
    machine = await bootMachine({ ...bootOptions, onOutput: (text) => (consoleTail = (consoleTail + text).slice(-8000)) }).catch(
      (error: Error) => {
        throw new Error(`${error.message}\n${consoleTail}`);
      },
    );
    say(`machine booted (systemd pid ${machine.leader} on the host)`);
    return machine;
  };
  try {
    return await body({ ...list, say, work, share, cleanup: (step) => steps.push(step), boot });
  } finally {
    if (machine) {
      const m: Machine = machine;
      if (!list.allPassed()) {
        const journal = await m.exec(['journalctl', '-u', 'spark-*', '-n', '120', '--no-pager', '-o', 'cat']);
        console.log(`--- journal of the spark units (last lines) ---\n${journal.stdout}`);
      }
      await m.powerOff();
      say('machine powered off');
    }
    for (const step of steps.reverse()) await Promise.resolve(step()).catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}
