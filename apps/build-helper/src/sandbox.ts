import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readdir, readFile, readlink, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SECURE_PATH } from '@spark/protocol';
import type { DebspawnDirs } from './debspawn-dirs.js';

/**
 * The helper's sandbox support files, shipped beside `src/` and `dist/`:
 * `enter` (builds the new root and runs the command), `unpack/` (the
 * dpkg-source and dpkg-parsechangelog debspawn meets first on its PATH, run as
 * the throwaway user), `bin/` (the systemd-nspawn it meets next; the package
 * exports it as `./systemd-nspawn` for root debspawn runs outside the helper)
 * and `python/sitecustomize.py` (debspawn's build-output check).
 */
export const SANDBOX_DIR = fileURLToPath(new URL('../sandbox/', import.meta.url));

/** Where the sandbox shows {@link SANDBOX_DIR}. */
const SUPPORT_MOUNT = '/run/spark-build-helper';

/** Where the sandbox shows the run's own files (its source, results, recipe and scripts). */
export const JOB_MOUNT = '/srv/spark';

/** The device nodes debspawn and systemd-nspawn use on the host side; nothing else of /dev is there. */
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty', 'ptmx'];

/** Top-level names that are links into /usr on a merged-/usr system, or directories of their own on an older one. */
const USR_ALIASES = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/** One of the run's own directories, shown at `<JOB_MOUNT>/<name>`. */
export interface JobBind {
  source: string;
  name: string;
  writable: boolean;
}

/** What a run's sandbox holds. */
export interface SandboxSpec {
  /** The run's root-only directory: the sandbox's /etc copy, temp dir and root mount point are made in it. */
  runDir: string;
  /** The debspawn executable; its directory is shown read-only when it lies outside /usr. */
  debspawn: string;
  dirs: DebspawnDirs;
  jobBinds: readonly JobBind[];
  /** The image run's prepared-image cache (`<imagesDir>/dcache`) is writable; builds only read images. */
  writableImageCache: boolean;
}

/** What the planner needs to know of the host (read by {@link inspectHost}). */
export interface HostLayout {
  /** For each of {@link USR_ALIASES} present: the link's target, or null for a real directory. */
  usrAliases: ReadonlyMap<string, string | null>;
  /** Device names of the optional ones present (`kvm`). */
  devices: readonly string[];
  /** Whether /run/systemd/resolve exists (a /etc/resolv.conf may link into it). */
  resolved: boolean;
  /** Which of debspawn's directories exist (a host whose Debspawn is a stand-in may have none). */
  images: boolean;
  aptCache: boolean;
  injectedPkgs: boolean;
  /** Whether /var/lib/dpkg exists. */
  dpkgDatabase: boolean;
}

/**
 * The steps of `sandbox/enter` for `spec` (pure: see {@link inspectHost} for
 * the host's side). The new root holds only: /usr read-only; of /etc, the copy
 * {@link copyPublicTree} made (what every user may read); debspawn's images
 * and dpkg's database read-only, its APT cache, the run's own directory as debspawn's temp dir;
 * the job's own files; a handful of device nodes; /sys; a new /proc, /run,
 * /tmp and /root. A link planted by a build or a recipe resolves in this
 * root, where no secret of the host exists.
 */
export function sandboxSteps(spec: SandboxSpec, host: HostLayout): string[] {
  const steps: string[] = [];
  const ro = (source: string, target = source) => steps.push('--ro', source, target);
  const rw = (source: string, target = source) => steps.push('--rw', source, target);
  for (const [name, target] of host.usrAliases) {
    if (target === null) ro(`/${name}`);
    else steps.push('--link', target, `/${name}`);
  }
  ro('/usr');
  ro(join(spec.runDir, 'etc'), '/etc');
  // The host's package database: dpkg's tools read it (dpkg-genbuildinfo, dpkg --print-architecture).
  if (host.dpkgDatabase) ro('/var/lib/dpkg');
  steps.push('--tmpfs', '/dev', '0755');
  for (const device of [...DEVICES, ...host.devices]) steps.push('--dev', device);
  rw('/dev/pts');
  steps.push('--tmpfs', '/dev/shm', '1777');
  rw('/sys');
  steps.push('--tmpfs', '/run', '0755');
  ro(SANDBOX_DIR.replace(/\/$/, ''), SUPPORT_MOUNT);
  if (host.resolved) ro('/run/systemd/resolve');
  steps.push('--tmpfs', '/tmp', '1777', '--dir', '/root', '0700', '--dir', '/var/tmp', '1777');
  if (host.images) ro(spec.dirs.imagesDir);
  if (host.images && spec.writableImageCache) rw(join(spec.dirs.imagesDir, 'dcache'));
  if (host.aptCache) rw(spec.dirs.aptCacheDir);
  if (host.injectedPkgs) ro(spec.dirs.injectedPkgsDir);
  rw(join(spec.runDir, 'tmp'), spec.dirs.tempDir);
  if (!spec.debspawn.startsWith('/usr/')) ro(dirname(spec.debspawn));
  for (const bind of spec.jobBinds) (bind.writable ? rw : ro)(bind.source, `${JOB_MOUNT}/${bind.name}`);
  return steps;
}

/** Reads what {@link sandboxSteps} needs of the host. */
export async function inspectHost(dirs: DebspawnDirs): Promise<HostLayout> {
  const usrAliases = new Map<string, string | null>();
  for (const name of USR_ALIASES) {
    const info = await lstat(`/${name}`).catch(() => null);
    if (info?.isSymbolicLink()) usrAliases.set(name, await readlink(`/${name}`));
    else if (info?.isDirectory()) usrAliases.set(name, null);
  }
  return {
    usrAliases,
    devices: existsSync('/dev/kvm') ? ['kvm'] : [],
    resolved: existsSync('/run/systemd/resolve'),
    images: existsSync(dirs.imagesDir),
    aptCache: existsSync(dirs.aptCacheDir),
    injectedPkgs: existsSync(dirs.injectedPkgsDir),
    dpkgDatabase: existsSync('/var/lib/dpkg'),
  };
}

/**
 * Copies of the tree `source` into the new directory `target` only what every
 * user of the host may read: directories others may list and enter, regular
 * files others may read, and symbolic links as they are (they resolve inside
 * the sandbox). A file only root or a group may read — /etc/shadow, sudoers,
 * the worker's OpenPGP and Curve keys, the Redis passwords — is simply not
 * there, and neither is anything below a directory others cannot enter.
 * Devices, FIFOs and sockets are left out.
 */
export async function copyPublicTree(source: string, target: string): Promise<void> {
  const info = await lstat(source);
  await mkdir(target);
  // The entries of a directory are copied side by side: /etc has about a thousand files.
  await Promise.all(
    (await readdir(source)).map(async (entry) => {
      const from = join(source, entry);
      const to = join(target, entry);
      const stat = await lstat(from).catch(() => null);
      if (!stat) return;
      if (stat.isSymbolicLink()) await symlink(await readlink(from), to);
      else if (stat.isDirectory() && (stat.mode & 0o005) === 0o005) await copyPublicTree(from, to);
      else if (stat.isFile() && (stat.mode & 0o004) !== 0) {
        await copyFile(from, to);
        await chmod(to, stat.mode & 0o7777);
      }
    }),
  );
  await chmod(target, info.mode & 0o7777);
}

/**
 * A user id for the run's unprivileged steps (unpacking the source, reading
 * its changelog, writing the recipe copy): none of the host's accounts has it,
 * so no other process can run as it, reach into its files or ptrace it.
 */
export async function throwawayUid(passwdFile = '/etc/passwd'): Promise<number> {
  const taken = new Set(
    (await readFile(passwdFile, 'utf8'))
      .split('\n')
      .map((line) => Number(line.split(':')[2]))
      .filter(Number.isInteger),
  );
  for (;;) {
    const uid = randomInt(0x4000_0000, 0x7fff_fff0);
    if (!taken.has(uid)) return uid;
  }
}

/** Makes the run directory's parts of the sandbox: the public /etc, debspawn's temp dir, the root mount point. */
export async function prepareSandbox(spec: SandboxSpec, host: HostLayout): Promise<void> {
  await copyPublicTree('/etc', join(spec.runDir, 'etc'));
  // The throwaway user must reach the directories debspawn makes in it (never list them).
  await mkdir(join(spec.runDir, 'tmp'), { mode: 0o711 });
  await chmod(join(spec.runDir, 'tmp'), 0o711);
  await mkdir(join(spec.runDir, 'root'), { mode: 0o700 });
  if (spec.writableImageCache && host.images) {
    // Prepared images are root's alone: no user can read or plant one.
    await mkdir(join(spec.dirs.imagesDir, 'dcache'), { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
    await chmod(join(spec.dirs.imagesDir, 'dcache'), 0o700);
  }
}

/** The command line that runs `file args` in the sandbox of `spec`, and its environment. */
export function sandboxCommand(
  spec: SandboxSpec,
  host: HostLayout,
  uid: number,
  file: string,
  args: readonly string[],
): { file: string; args: string[]; env: Record<string, string> } {
  return {
    file: 'unshare',
    args: [
      '--mount',
      '--pid',
      '--fork',
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      join(SANDBOX_DIR, 'enter'),
      join(spec.runDir, 'root'),
      ...sandboxSteps(spec, host),
      '--',
      file,
      ...args,
    ],
    env: {
      PATH: `${SUPPORT_MOUNT}/unpack:${SUPPORT_MOUNT}/bin:${SECURE_PATH}`,
      PYTHONPATH: `${SUPPORT_MOUNT}/python`,
      SPARK_SANDBOX_UID: String(uid),
      LANG: 'C.UTF-8',
      HOME: '/root',
      TERM: 'dumb',
    },
  };
}
