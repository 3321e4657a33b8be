import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where booted root file systems are cached between runs, one directory per package list. */
export const ROOTFS_CACHE = process.env['SPARK_DEPLOY_TEST_CACHE'] ?? '/var/cache/spark-deploy-test';

/**
 * What the test machine has besides minbase: systemd as PID 1, most of what
 * the package depends on (so that installing it, or the install.sh of before
 * it, fetches little), and what the host runner builds with.
 */
export const ROOTFS_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'dbus',
  'procps',
  // resolves the machine's own host name, as on any installed Debian host (sudo looks it up)
  'libnss-myhostname',
  // the package's Depends (earlier-install.sh's runtime packages)
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

/** The Debian releases a test machine can be: 12 (NodeSource's nodejs needed) and 13 (Debian's own nodejs 20). */
export type Suite = 'bookworm' | 'trixie';

/**
 * A root file system of `suite` (bookworm unless named) with
 * {@link ROOTFS_PACKAGES}, made with debootstrap from this host's mirror once
 * per suite, package list and mirror and reused afterwards (the test boots it
 * with a volatile overlay, so it stays as made).
 */
export async function cachedRootfs(log: (line: string) => void, suite: Suite = 'bookworm'): Promise<string> {
  const mirror = await hostMirror();
  const key = createHash('sha256')
    .update(JSON.stringify({ suite, mirror, packages: ROOTFS_PACKAGES, revision: 1 }))
    .digest('hex')
    .slice(0, 16);
  const dir = join(ROOTFS_CACHE, `${suite}-${key}`);
  if (existsSync(join(dir, 'etc', 'spark-deploy-test-rootfs'))) {
    log(`root file system: cached ${dir}`);
    return dir;
  }
  const partial = `${dir}.partial`;
  await rm(partial, { recursive: true, force: true });
  log(`root file system: debootstrap ${suite} from ${mirror} into ${dir} (a few minutes, once)`);
  const args = ['--variant=minbase', `--include=${ROOTFS_PACKAGES.join(',')}`, suite, partial, mirror];
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
    if (name.startsWith(`${suite}-`) && join(ROOTFS_CACHE, name) !== dir) {
      log(`root file system: removing the outdated ${name}`);
      await rm(join(ROOTFS_CACHE, name), { recursive: true, force: true });
    }
  }
  return dir;
}

/** The Node.js the package depends on (`nodejs (>= 20.19)`): bookworm's own is 18. */
const NODEJS_MINIMUM = '20.19';

/**
 * This host's installed `nodejs` package (NodeSource's, on a bookworm host)
 * as a .deb, remade from the installed files with dpkg-repack once per
 * version and kept beside the root file systems: the package test installs
 * it in the machine first, as an operator on bookworm installs NodeSource's
 * package before spark-ts.
 */
export async function cachedNodejsDeb(log: (line: string) => void): Promise<string> {
  const { stdout } = await run('dpkg-query', ['-W', '-f', '${Status}\t${Version}\t${Architecture}', 'nodejs']).catch(() => ({
    stdout: '',
  }));
  const [status, version, arch] = stdout.split('\t');
  if (status !== 'install ok installed' || !version || !arch)
    throw new Error('this host has no nodejs package installed: install Node.js 20.19 or newer as a package (NodeSource) first');
  const newEnough = await run('dpkg', ['--compare-versions', version, 'ge', NODEJS_MINIMUM]).then(
    () => true,
    () => false,
  );
  if (!newEnough) throw new Error(`this host's nodejs is ${version}: the spark-ts package needs ${NODEJS_MINIMUM} or newer`);
  const deb = join(ROOTFS_CACHE, `nodejs_${version.replace(/^\d+:/, '')}_${arch}.deb`);
  if (existsSync(deb)) {
    log(`nodejs: cached ${deb}`);
    return deb;
  }
  const repack = await run('sh', ['-c', 'command -v dpkg-repack']).catch(() => null);
  if (!repack) throw new Error('dpkg-repack is missing on this host: apt-get install dpkg-repack (scripts/setup.sh installs it)');
  log(`nodejs: dpkg-repack nodejs ${version} into ${ROOTFS_CACHE} (a few minutes, once per version)`);
  const partial = `${deb}.partial.d`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  // gzip rather than dpkg-deb's default xz: the file stays on this host, and xz takes minutes for node.
  await run('dpkg-repack', ['--deb-option=-Zgzip', 'nodejs'], { cwd: partial, maxBuffer: 16 << 20 });
  const made = (await readdir(partial)).find((name) => name.endsWith('.deb'));
  if (!made) throw new Error(`dpkg-repack nodejs left no .deb in ${partial}`);
  await rename(join(partial, made), deb);
  await rm(partial, { recursive: true, force: true });
  // Repacks of older versions are not used again.
  for (const name of await readdir(ROOTFS_CACHE)) {
    if (name.startsWith('nodejs_') && join(ROOTFS_CACHE, name) !== deb)
      await rm(join(ROOTFS_CACHE, name), { recursive: true, force: true });
  }
  return deb;
}
