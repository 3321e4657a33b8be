import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeSourcePackage, nodeEntryArgs, waitFor } from '@spark/testing';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
// The debspawn stand-in that builds on the host (tools/host-runner, a plain script; no import).
const hostRunner = fileURLToPath(new URL('../../../tools/host-runner/debspawn', import.meta.url));
const NOBODY = 65534;

interface Outcome {
  code: number | null;
  stderr: string;
  stdout: string;
}

function startHelper(args: string[], options: { stdin?: 'pipe' | 'ignore' } = {}): { child: ChildProcess; outcome: Promise<Outcome> } {
  const child = spawn(process.execPath, [...nodeEntryArgs(main), ...args], {
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const outcome = once(child, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr }));
  return { child, outcome };
}

/** An argument of `sleep` that marks the tree debspawn's members (`sleep 300.<random>`). */
const TREE_MARK = `300.${process.pid}`;

/** The pids, as this process sees them, of the processes whose command line is `sleep <TREE_MARK>`, and the shell that started them. */
async function treePids(): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    const [file, script] = cmdline.split('\0');
    if (cmdline === `sleep\0${TREE_MARK}\0` || (file === '/bin/sh' && script?.endsWith('/tree-debspawn'))) pids.push(Number(name));
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('spark-build-helper on disk, as root', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, () => {
  let dir: string;
  let root: string;
  let ws: string;
  let config: string;
  let treeConfig: string;
  let dsc: string;
  const own = (configFile: string) => ['--config', configFile, '--state-dir', join(dir, 'state'), '--kill-grace-ms', '2000'];
  const buildArgs = (dscPath: string, results: string) => [
    'build',
    '--no-buildlog',
    '--arch=amd64',
    `--results-dir=${results}`,
    '--only=arch',
    'bookworm',
    dscPath,
  ];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-helper-'));
    await chmod(dir, 0o755);
    root = join(dir, 'lkspark');
    ws = join(root, 'workspaces', '3f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b');
    await mkdir(join(ws, 'source'), { recursive: true });
    await mkdir(join(ws, 'results'));
    dsc = (await makeSourcePackage(join(ws, 'source'), { name: 'hello', version: '1.0' })).dsc;
    // The builder owns its workspace: here `nobody` plays spark-builder.
    for (const path of [
      ws,
      join(ws, 'source'),
      join(ws, 'results'),
      ...(await readdir(join(ws, 'source'))).map((n) => join(ws, 'source', n)),
    ]) {
      await chown(path, NOBODY, NOBODY);
    }
    config = join(dir, 'spark.toml');
    await writeFile(config, `WorkspaceRoot = '${root}/'\n\n[builder]\nDebspawn = '${hostRunner}'\n`, { mode: 0o644 });
    // A debspawn that starts a tree — one member in its own session, out of the process group — and waits.
    // Its members are found by their command lines: in the helper's sandbox they have pids of their own.
    const tree = join(dir, 'tree-debspawn');
    await writeFile(tree, `#!/bin/sh\nsetsid sleep ${TREE_MARK} &\nsleep ${TREE_MARK} &\necho started\nwait\n`, { mode: 0o755 });
    treeConfig = join(dir, 'tree.toml');
    await writeFile(treeConfig, `WorkspaceRoot = '${root}'\n[builder]\nDebspawn = '${tree}'\n`, { mode: 0o644 });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('builds a package with the host runner as debspawn and hands the results to the caller', { timeout: 120_000 }, async () => {
    const { outcome } = startHelper([...own(config), '--owner', `${NOBODY}:${NOBODY}`, ...buildArgs(dsc, join(ws, 'results'))]);
    const { code, stderr, stdout } = await outcome;
    assert.equal(code, 0, stderr + stdout);
    const names = (await readdir(join(ws, 'results'))).sort();
    assert.equal(names.length, 3, names.join());
    for (const ext of ['buildinfo', 'changes', 'deb'])
      assert.ok(
        names.some((n) => new RegExp(`^hello_1\\.0_[a-z0-9]+\\.${ext}$`).test(n)),
        ext,
      );
    for (const name of names) assert.equal((await stat(join(ws, 'results', name))).uid, NOBODY, `${name} belongs to the caller`);
    assert.match(stderr, /handed 3 result file\(s\) back/);
    assert.deepEqual(await readdir(join(dir, 'state')), [], 'the private copies are gone');
  });

  it(
    'removes the private directories killed helpers left behind (their pid gone, or another program now)',
    { timeout: 120_000 },
    async () => {
      const other = spawn('sleep', ['60']);
      try {
        await mkdir(join(dir, 'state', 'run-999999999-left'), { recursive: true });
        await mkdir(join(dir, 'state', `run-${other.pid}-reused`), { recursive: true });
        const { code, stderr } = await startHelper([...own(config), ...buildArgs(dsc, join(ws, 'results'))]).outcome;
        assert.equal(code, 0, stderr);
        assert.deepEqual(await readdir(join(dir, 'state')), []);
      } finally {
        other.kill();
      }
    },
  );

  it('refuses a path through a symbolic link, and says which component', async () => {
    const linked = join(root, 'workspaces', 'linked');
    await symlink(ws, linked);
    const { code, stderr } = await startHelper([
      ...own(config),
      ...buildArgs(join(linked, 'source', 'hello_1.0.dsc'), join(linked, 'results')),
    ]).outcome;
    assert.equal(code, 64);
    assert.match(stderr, new RegExp(`refused: the \\.dsc: ${linked} is a symbolic link; the helper follows none`));
  });

  it('refuses paths outside the workspace root, such as /etc, and results in another workspace', async () => {
    let result = await startHelper([...own(config), ...buildArgs('/etc/hello_1.0.dsc', join(ws, 'results'))]).outcome;
    assert.equal(result.code, 64);
    assert.match(result.stderr, /refused: the \.dsc: \/etc\/hello_1\.0\.dsc is not inside a job workspace below/);
    const other = join(root, 'workspaces', 'other');
    await mkdir(join(other, 'results'), { recursive: true });
    result = await startHelper([...own(config), ...buildArgs(dsc, join(other, 'results'))]).outcome;
    assert.equal(result.code, 64);
    assert.match(result.stderr, /lie in different workspaces/);
  });

  it('refuses the image run with --build-dir /etc/laniakea or a recipe outside the fixed layout', async () => {
    const run = (buildDir: string) => [
      'run',
      '--external-command',
      '--arch=amd64',
      '--artifacts-out',
      join(ws, 'results'),
      '--build-dir',
      buildDir,
      '--header=x',
      'bookworm',
      dsc,
    ];
    let result = await startHelper([...own(config), ...run('/etc')]).outcome;
    assert.equal(result.code, 64);
    assert.match(result.stderr, /refused: --build-dir: \/etc is not inside a job workspace/);
    result = await startHelper([...own(config), ...run(join(ws, 'source'))]).outcome;
    assert.equal(result.code, 64);
    assert.match(result.stderr, /the image run's files lie in <workspace>\/run-<uuid>\/, nothing else/);
  });

  it('refuses a configuration that others can write', async () => {
    const loose = join(dir, 'loose.toml');
    await writeFile(loose, `WorkspaceRoot = '${root}'\n`);
    await chmod(loose, 0o666);
    const { code, stderr } = await startHelper([...own(loose), '--version']).outcome;
    assert.equal(code, 64);
    assert.match(stderr, /must be owned by root and not writable by group or others/);
  });

  it('runs the image build on private copies of its recipe and scripts and hands the artifacts back', { timeout: 60_000 }, async () => {
    const image = join(dir, 'image-debspawn');
    // Records its arguments, leaves an artifact and a root-made file in the recipe checkout.
    await writeFile(
      image,
      `#!/bin/sh\nargs="$*"\nwhile [ $# -gt 0 ]; do case "$1" in --artifacts-out) out=$2; shift;; --build-dir) build=$2; shift;; esac; shift; done\necho disk > "$out/disk.img"\necho "$args" > "$out/args"\ncp "$build/build.sh" "$out/recipe-seen"\n`,
      { mode: 0o755 },
    );
    const imageConfig = join(dir, 'image.toml');
    await writeFile(imageConfig, `WorkspaceRoot = '${root}'\n[builder]\nDebspawn = "${image}"\n`, { mode: 0o644 });
    // One run of the job, as the builder lays it out: <workspace>/run-<uuid>/{image,ib,build-command.sh}.
    const runDir = join(ws, 'run-0b9c7e1a-2f3d-4c5b-8a69-7d8e9f0a1b2c');
    for (const path of [runDir, join(runDir, 'image'), join(runDir, 'ib')]) {
      await mkdir(path, { recursive: true });
      await chown(path, NOBODY, NOBODY);
    }
    await writeFile(join(runDir, 'build-command.sh'), '#!/bin/sh\nexec ./build.sh\n');
    await writeFile(join(runDir, 'ib', 'build.sh'), 'echo building\n');
    await symlink('/etc/shadow', join(runDir, 'ib', 'planted'));
    const imageRun = () =>
      startHelper([
        ...own(imageConfig),
        '--owner',
        `${NOBODY}:${NOBODY}`,
        'run',
        '--external-command',
        '--arch=amd64',
        '--artifacts-out',
        join(runDir, 'image'),
        '--build-dir',
        join(runDir, 'ib'),
        '--header=Test image build',
        'bookworm',
        join(runDir, 'build-command.sh'),
      ]).outcome;
    const refused = await imageRun();
    assert.equal(refused.code, 65, refused.stderr);
    assert.match(refused.stderr, /refused build: the recipe holds a symbolic link out of its checkout: planted -> \/etc\/shadow/);
    assert.deepEqual(await readdir(join(runDir, 'image')), [], 'nothing handed back');
    await rm(join(runDir, 'ib', 'planted'));
    await symlink('build.sh', join(runDir, 'ib', 'inside'));
    const { code, stderr } = await imageRun();
    assert.equal(code, 0, stderr);
    // debspawn sees the run's private copies where the sandbox shows them.
    const args = await readFile(join(runDir, 'image', 'args'), 'utf8');
    assert.match(
      args,
      /--artifacts-out \/srv\/spark\/artifacts --build-dir \/srv\/spark\/recipe --header=Test image build bookworm \/srv\/spark\/scripts\/build-command.sh/,
    );
    assert.equal(await readFile(join(runDir, 'image', 'disk.img'), 'utf8'), 'disk\n');
    assert.equal((await stat(join(runDir, 'image', 'disk.img'))).uid, NOBODY);
    assert.equal(await readFile(join(runDir, 'image', 'recipe-seen'), 'utf8'), 'echo building\n', 'debspawn got the recipe');
  });

  async function startTree(options: { stdin?: 'pipe' | 'ignore' } = {}) {
    const helper = startHelper([...own(treeConfig), ...buildArgs(dsc, join(ws, 'results'))], options);
    await waitFor('the tree to start', async () => (await treePids()).length === 3, { timeoutMs: 20_000 });
    const pids = await treePids();
    assert.ok(pids.every(alive));
    return { ...helper, pids };
  }

  it('ends the whole tree on SIGTERM, the member in its own session included, and exits 143', { timeout: 30_000 }, async () => {
    const { child, outcome, pids } = await startTree();
    child.kill('SIGTERM');
    const { code, stderr } = await outcome;
    assert.equal(code, 143);
    assert.match(stderr, /stopping debspawn and everything it started: received SIGTERM/);
    await waitFor('every member to be gone', () => pids.every((pid) => !alive(pid)), { timeoutMs: 5_000 });
  });

  it('ends the tree when its stdin (a pipe from the caller) closes', { timeout: 30_000 }, async () => {
    const { child, outcome, pids } = await startTree({ stdin: 'pipe' });
    child.stdin?.end();
    const { code, stderr } = await outcome;
    assert.equal(code, 143);
    assert.match(stderr, /its stdin was closed/);
    await waitFor('every member to be gone', () => pids.every((pid) => !alive(pid)), { timeoutMs: 5_000 });
  });

  it('ends the tree when its caller dies (SIGKILL, nothing relayed)', { timeout: 30_000 }, async () => {
    // The caller: a shell that starts the helper and waits, like sudo does.
    const args = [...nodeEntryArgs(main), ...own(treeConfig), ...buildArgs(dsc, join(ws, 'results'))];
    const caller = spawn('/bin/sh', ['-c', `"$0" "$@" </dev/null & wait`, process.execPath, ...args], { stdio: 'ignore' });
    await waitFor('the tree to start', async () => (await treePids()).length === 3, { timeoutMs: 20_000 });
    const pids = await treePids();
    caller.kill('SIGKILL');
    await waitFor('every member to be gone', () => pids.every((pid) => !alive(pid)), { timeoutMs: 10_000 });
    assert.ok(!existsSync(join(dir, 'state', 'leftover')));
  });
});
