import { existsSync } from 'node:fs';
import { delimiter, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SignalTree } from './process-tree.js';
import type { Command } from './run-logged.js';

/** Where systemd registers machines; without it, systemd-nspawn needs `--keep-unit`. */
export const SYSTEM_BUS_SOCKET = '/run/dbus/system_bus_socket';

/**
 * The directory of the build helper's `systemd-nspawn` (it adds `--keep-unit
 * --register=no`), the one wrapper every root debspawn run on a host without
 * a system bus uses: the helper runs debspawn with it in its sandbox, and a
 * builder running as root puts this directory first on debspawn's PATH.
 * Resolved by package name: a file the builder uses at run time, no code.
 */
export function nspawnWrapperDir(): string {
  return dirname(fileURLToPath(import.meta.resolve('@spark/build-helper/systemd-nspawn')));
}

/** Defined by tools/package when it bundles the builder for the Debian package, which installs the helper elsewhere. */
declare const SPARK_PACKAGED_BUILD_HELPER: string | undefined;

/**
 * The root-owned build helper (apps/build-helper) that
 * deploy/sudoers/10spark-builder names: the only thing spark-builder may run
 * as root. It takes debspawn's arguments, checks them, and runs the
 * `debspawn` that spark.toml names. The Debian package installs it as
 * /usr/sbin/spark-build-helper, and its sudoers rule names that. Run from a
 * checkout (development, tests) it is /usr/local/sbin/spark-build-helper, the
 * path deploy/sudoers/10spark-builder names before tools/package rewrites it.
 */
export const BUILD_HELPER =
  typeof SPARK_PACKAGED_BUILD_HELPER === 'string' ? SPARK_PACKAGED_BUILD_HELPER : '/usr/local/sbin/spark-build-helper';

/** The {@link SignalTree} of a command run through sudo: the signal goes to sudo, which relays it. */
export const signalSudo: SignalTree = (pid, signal) => {
  try {
    process.kill(pid, signal);
  } catch {
    // sudo is gone already.
  }
};

/** How debspawn is started on this host. */
export interface DebspawnEnvironment {
  /** The `debspawn` executable (`[builder] Debspawn`), run directly when the builder is root. */
  debspawn: string;
  /** Not root: run `sudo -n <helper> <debspawn arguments>` instead (the helper reads `Debspawn` from spark.toml itself). */
  useSudo: boolean;
  /** The build helper's installed path (default {@link BUILD_HELPER}). */
  helper?: string;
  /** Directory put first on debspawn's PATH, or null: the nspawn wrapper on hosts without a system bus. */
  pathPrefix: string | null;
}

/** Looks at the host: root or not, system bus or not. */
export function detectDebspawnEnvironment(debspawn: string): DebspawnEnvironment {
  const useSudo = typeof process.getuid === 'function' && process.getuid() !== 0;
  // Through sudo, the helper brings the wrapper itself.
  const needsWrapper = !useSudo && !existsSync(SYSTEM_BUS_SOCKET);
  return { debspawn, useSudo, pathPrefix: needsWrapper ? nspawnWrapperDir() : null };
}

/** The command line running `debspawn <args>` on this host. */
export function debspawnCommand(env: DebspawnEnvironment, args: readonly string[]): Command {
  const path = env.pathPrefix ? `${env.pathPrefix}${delimiter}${process.env['PATH'] ?? ''}` : undefined;
  if (env.useSudo) {
    // The sudoers rule allows exactly the helper. A stop signals sudo alone (its
    // tree runs as root): sudo relays SIGTERM to the helper, which ends debspawn
    // and the container (TERM, grace, KILL), and also stops when sudo or we go away.
    return { file: 'sudo', args: ['-n', env.helper ?? BUILD_HELPER, ...args], signalTree: signalSudo };
  }
  return { file: env.debspawn, args, ...(path ? { env: { PATH: path } } : {}) };
}
