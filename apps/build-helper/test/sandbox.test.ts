import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  copyPublicTree,
  imageCacheKey,
  inspectHost,
  parseDebspawnDirs,
  prepareSandbox,
  sandboxCommand,
  sandboxSteps,
  type SandboxSpec,
} from '@spark/build-helper';

const run = promisify(execFile);

describe('the sandbox debspawn runs in, as root on this host', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, () => {
  let dir: string;
  const canaries: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-sandbox-'));
    // Root-only files in places no list names: /etc (a new directory and a file), /root, /srv.
    await mkdir('/etc/spark-sandbox-test', { recursive: true, mode: 0o700 });
    for (const path of ['/etc/spark-sandbox-test/key', '/etc/spark-sandbox-test.secret', '/root/spark-sandbox-test.secret']) {
      await writeFile(path, 'CANARY\n', { mode: 0o600 });
      canaries.push(path);
    }
    await mkdir('/srv/spark-sandbox-test', { recursive: true, mode: 0o700 });
    await writeFile('/srv/spark-sandbox-test/canary', 'CANARY\n', { mode: 0o600 });
    canaries.push('/srv/spark-sandbox-test/canary', '/etc/shadow');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    for (const path of [
      '/etc/spark-sandbox-test',
      '/etc/spark-sandbox-test.secret',
      '/root/spark-sandbox-test.secret',
      '/srv/spark-sandbox-test',
    ]) {
      await rm(path, { recursive: true, force: true });
    }
  });

  async function inSandbox(script: string): Promise<string> {
    const runDir = await mkdtemp(join(dir, 'run-'));
    await chmod(runDir, 0o700);
    const spec: SandboxSpec = {
      runDir,
      debspawn: '/usr/bin/debspawn',
      dirs: parseDebspawnDirs('', 'none'),
      jobBinds: [],
      writableImageCache: false,
    };
    const host = await inspectHost(spec.dirs);
    await prepareSandbox(spec, host);
    const command = sandboxCommand(spec, host, 1_234_567_890, '/bin/sh', ['-c', script]);
    const { stdout } = await run(command.file, command.args, { env: command.env });
    return stdout;
  }

  it('holds no root-only file of the host, wherever it lies; only what every user may read', { timeout: 60_000 }, async () => {
    const out = await inSandbox(
      [
        ...canaries.map((path) => `if cat ${path} >/dev/null 2>&1; then echo "read ${path}"; else echo "missing ${path}"; fi`),
        'cat /etc/hostname >/dev/null && echo public-ok',
      ].join('\n'),
    );
    for (const path of canaries) assert.match(out, new RegExp(`missing ${path}`), out);
    assert.match(out, /public-ok/);
  });

  it('shows only its own processes, so /proc/<pid>/root leads nowhere else', { timeout: 60_000 }, async () => {
    const out = await inSandbox('ls -d /proc/[0-9]* | wc -l; cat /proc/1/cmdline | tr "\\0" " "; echo; ls /proc/1/root/');
    const [count, init] = out.split('\n');
    assert.ok(Number(count) <= 4, `the sandbox sees ${count} processes`);
    assert.match(init ?? '', /sandbox\/enter/);
    assert.doesNotMatch(out, /\bhome\b|\bboot\b/, 'the host root is not reachable');
  });

  it("finds the helper's dpkg-source, dpkg-parsechangelog and systemd-nspawn before the host's", { timeout: 60_000 }, async () => {
    const out = await inSandbox('for tool in dpkg-source dpkg-parsechangelog systemd-nspawn debspawn; do command -v $tool; done');
    assert.deepEqual(out.trim().split('\n'), [
      '/run/spark-build-helper/unpack/dpkg-source',
      '/run/spark-build-helper/unpack/dpkg-parsechangelog',
      '/run/spark-build-helper/bin/systemd-nspawn',
      '/usr/bin/debspawn',
    ]);
  });

  it(
    "makes the run's own directory debspawn's temp dir, and runs the unprivileged steps as the throwaway user",
    { timeout: 60_000 },
    async () => {
      const out = await inSandbox(
        'mkdir /var/tmp/debspawn/x && cd /var/tmp/debspawn/x && /run/spark-build-helper/unpack/unprivileged id -u; stat -c %a /var/tmp',
      );
      assert.match(out, /^1234567890$/m);
      assert.match(out, /^1777$/m);
    },
  );
});

describe('the sandbox plan', () => {
  const spec: SandboxSpec = {
    runDir: '/var/lib/spark-build-helper/run-1-abc',
    debspawn: '/usr/bin/debspawn',
    dirs: parseDebspawnDirs(
      "OSImagesDir = '/srv/ds/images/'\nTempDir = \"/srv/ds/tmp\"\n[other]\nAPTCacheDir = '/ignored'\n",
      'global.toml',
    ),
    jobBinds: [{ source: '/var/lib/spark-build-helper/run-1-abc/results', name: 'results', writable: true }],
    writableImageCache: false,
  };
  const host = {
    usrAliases: new Map([['bin', 'usr/bin']]),
    devices: [],
    resolved: false,
    images: true,
    aptCache: true,
    injectedPkgs: false,
    dpkgDatabase: true,
  };

  it("follows debspawn's global.toml, binds images read-only and the run's temp dir at TempDir", () => {
    const steps = sandboxSteps(spec, host).join(' ');
    assert.match(steps, /--ro \/srv\/ds\/images \/srv\/ds\/images/);
    assert.match(steps, /--rw \/var\/lib\/debspawn\/aptcache \/var\/lib\/debspawn\/aptcache/);
    assert.match(steps, /--rw \/var\/lib\/spark-build-helper\/run-1-abc\/tmp \/srv\/ds\/tmp/);
    assert.match(steps, /--rw \/var\/lib\/spark-build-helper\/run-1-abc\/results \/srv\/spark\/results/);
    assert.doesNotMatch(steps, /dcache/, 'a package build cannot write the prepared-image cache');
    assert.match(sandboxSteps({ ...spec, writableImageCache: true }, host).join(' '), /--rw \/srv\/ds\/images\/dcache/);
    assert.doesNotMatch(steps, /--r[ow] \/(etc|root|home)\b/, 'the host /etc, /root and /home are never bound');
  });

  it("binds none of debspawn's directories that this host lacks (a stand-in's host has none)", () => {
    const steps = sandboxSteps({ ...spec, writableImageCache: true }, { ...host, images: false, aptCache: false }).join(' ');
    assert.doesNotMatch(steps, /\/srv\/ds\/images|aptcache/);
  });

  it('refuses a relative debspawn directory setting', () => {
    assert.throws(() => parseDebspawnDirs("TempDir = 'tmp'\n", 'global.toml'), /TempDir must be an absolute path/);
  });
});

describe('copyPublicTree and the image cache key', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-public-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('copies what every user may read and leaves out the rest', async () => {
    const source = join(dir, 'etc');
    await mkdir(join(source, 'private'), { recursive: true });
    await chmod(join(source, 'private'), 0o700);
    await writeFile(join(source, 'private', 'inside'), 'x', { mode: 0o644 });
    await writeFile(join(source, 'public'), 'p', { mode: 0o644 });
    await writeFile(join(source, 'group-only'), 'g', { mode: 0o640 });
    await run('ln', ['-s', '/etc/shadow', join(source, 'link')]);
    await copyPublicTree(source, join(dir, 'copy'));
    const { stdout } = await run('find', [join(dir, 'copy'), '-printf', '%P %y\n']);
    assert.deepEqual(stdout.split('\n').filter(Boolean).sort(), [' d', 'link l', 'public f']);
  });

  it('keys a prepared image by the recipe: one changed byte is another key, a .git difference is not', async () => {
    const recipe = join(dir, 'recipe');
    await mkdir(join(recipe, '.git'), { recursive: true });
    await writeFile(join(recipe, 'prepare.sh'), 'true\n');
    await writeFile(join(dir, 'init.sh'), 'exec ./prepare.sh\n');
    const first = await imageCacheKey('bookworm-mkimage-iso-plasma-any', 'amd64', recipe, join(dir, 'init.sh'));
    assert.match(first, /^bookworm-mkimage-iso-plasma-any-amd64-[0-9a-f]{32}$/);
    await writeFile(join(recipe, '.git', 'index'), 'differs between clones');
    assert.equal(await imageCacheKey('bookworm-mkimage-iso-plasma-any', 'amd64', recipe, join(dir, 'init.sh')), first);
    await writeFile(join(recipe, 'prepare.sh'), 'true \n');
    assert.notEqual(await imageCacheKey('bookworm-mkimage-iso-plasma-any', 'amd64', recipe, join(dir, 'init.sh')), first);
    assert.notEqual(await imageCacheKey('bookworm-mkimage-iso-plasma-any', 'arm64', recipe, join(dir, 'init.sh')), first);
  });
});
