import { existsSync } from 'node:fs';
import { delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from './run-logged.js';

/** Where systemd registers machines; without it, systemd-nspawn needs `--keep-unit`. */
export const SYSTEM_BUS_SOCKET = '/run/dbus/system_bus_socket';

/**
 * The builder's own `nspawn-wrapper/` (a `systemd-nspawn` that adds
 * `--keep-unit`), shipped with this package: `src/` and `dist/` sit at the
 * same depth, so the same relative path serves dev runs and the installed build.
 */
export const NSPAWN_WRAPPER_DIR = fileURLToPath(new URL('../nspawn-wrapper/', import.meta.url));

/** How debspawn is started on this host. */
export interface DebspawnEnvironment {
  /** The `debspawn` executable (`[builder] Debspawn`). */
  debspawn: string;
  /** Prefix `sudo -n` (spark's sudoers rule allows debspawn): when not running as root. */
  useSudo: boolean;
  /** Directory put first on debspawn's PATH, or null: the nspawn wrapper on hosts without a system bus. */
  pathPrefix: string | null;
}

/** Looks at the host: root or not, system bus or not. */
export function detectDebspawnEnvironment(debspawn: string): DebspawnEnvironment {
  const needsWrapper = !existsSync(SYSTEM_BUS_SOCKET) && existsSync(NSPAWN_WRAPPER_DIR);
  return {
    debspawn,
    useSudo: typeof process.getuid === 'function' && process.getuid() !== 0,
    pathPrefix: needsWrapper ? NSPAWN_WRAPPER_DIR : null,
  };
}

/** The command line running `debspawn <args>` on this host. */
export function debspawnCommand(env: DebspawnEnvironment, args: readonly string[]): Command {
  const path = env.pathPrefix ? `${env.pathPrefix}${delimiter}${process.env['PATH'] ?? ''}` : undefined;
  if (env.useSudo) {
    // spark's sudoers rule allows exactly `debspawn`; sudo resets PATH, so a host
    // that needs both sudo and the nspawn wrapper must install the wrapper in secure_path.
    return { file: 'sudo', args: ['-n', env.debspawn, ...args] };
  }
  return { file: env.debspawn, args, ...(path ? { env: { PATH: path } } : {}) };
}
