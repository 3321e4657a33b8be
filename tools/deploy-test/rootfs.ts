import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where booted root file systems are cached between runs, one directory per package list. */
export const ROOTFS_CACHE = process.env['SPARK_DEPLOY_TEST_CACHE'] ?? '/var/cache/spark-deploy-test';

/**
 * What the test machine has besides minbase: systemd as PID 1, what
 * deploy/install.sh installs (so its package step finds them present and the
 * test needs no network for apt), and what the host runner builds with.
 */
export const ROOTFS_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'dbus',
  'procps',
  // resolves the machine's own host name, as on any installed Debian host (sudo looks it up)
  'libnss-myhostname',
  // deploy/install.sh's runtime packages
  'redis-server',
  'logrotate',
  'debspawn',
  'systemd-container',
  'debootstrap',
  'zstd',
  'sudo',
  'gnupg',
  'ca-certificates',
  'git',
  // tools/host-runner/debspawn: dpkg-buildpackage on the "host"
  'dpkg-dev',
  'build-essential',
  'fakeroot',
];

/** The Debian mirror this host's apt uses (deb822 `URIs:` for bookworm), or deb.debian.org. */
export async function hostMirror(): Promise<string> {
  const dir = '/etc/apt/sources.list.d';
  const files = existsSync(dir) ? (await readdir(dir)).filter((name) => name.endsWith('.sources')) : [];
  for (const name of files) {
    for (const stanza of (await readFile(join(dir, name), 'utf8')).split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      if (uri && /^Suites:.*\bbookworm\b/m.test(stanza) && !/security/.test(uri)) return uri;
    }
  }
  return 'http://deb.debian.org/debian';
}

/**
 * A bookworm root file system with {@link ROOTFS_PACKAGES}, made with
 * debootstrap once per package list and mirror and reused afterwards (the
 * test boots it with a volatile overlay, so it stays as made).
 */
export async function cachedRootfs(log: (line: string) => void): Promise<string> {
  const mirror = await hostMirror();
  const key = createHash('sha256')
    .update(JSON.stringify({ suite: 'bookworm', mirror, packages: ROOTFS_PACKAGES, revision: 1 }))
    .digest('hex')
    .slice(0, 16);
  const dir = join(ROOTFS_CACHE, `bookworm-${key}`);
  if (existsSync(join(dir, 'etc', 'spark-deploy-test-rootfs'))) {
    log(`root file system: cached ${dir}`);
    return dir;
  }
  const partial = `${dir}.partial`;
  await rm(partial, { recursive: true, force: true });
  log(`root file system: debootstrap bookworm from ${mirror} into ${dir} (a few minutes, once)`);
  const args = ['--variant=minbase', `--include=${ROOTFS_PACKAGES.join(',')}`, 'bookworm', partial, mirror];
  await new Promise<void>((resolve, reject) => {
    const child = spawn('debootstrap', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (chunk: Buffer) => (tail = (tail + chunk.toString()).slice(-4000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`debootstrap exited with ${code}:\n${tail}`))));
  });
  // Redis must not listen on the shared loopback before install.sh gives it the port spark.toml names.
  await run('sed', ['-i', '-E', 's/^port [0-9]+$/port 0/', join(partial, 'etc/redis/redis.conf')]);
  await writeFile(join(partial, 'etc', 'spark-deploy-test-rootfs'), `${args.join(' ')}\n`);
  await rename(partial, dir);
  // Root file systems for older package lists are not used again.
  for (const name of await readdir(ROOTFS_CACHE)) {
    if (name.startsWith('bookworm-') && join(ROOTFS_CACHE, name) !== dir) {
      log(`root file system: removing the outdated ${name}`);
      await rm(join(ROOTFS_CACHE, name), { recursive: true, force: true });
    }
  }
  return dir;
}
