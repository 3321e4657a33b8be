import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { OsImageBuildJob } from '@spark/protocol';
import { runImageBuild, SPARK_ID, unsafePermissionsAllowed } from '../src/image-build.js';
import { openJobLog } from '../src/job-log.js';

const run = promisify(execFile);

/*
 * A stand-in `debspawn run` that runs the command file on the host: /srv/build
 * becomes the --build-dir, the recipe finds the --artifacts-out directory in
 * SPARK_TEST_ARTIFACTS, and the arguments are printed for the test to check.
 */
const FAKE_DEBSPAWN = `#!/bin/sh
echo "stand-in debspawn $*"
for arg in "$@"; do
  case "$prev" in --build-dir) build="$arg" ;; --artifacts-out) out="$arg" ;; esac
  prev="$arg"; script="$arg"
done
sed "s|/srv/build|$build|" "$script" > "$script.host"
SPARK_TEST_ARTIFACTS="$out" exec sh "$script.host"
`;

describe('OS image builds as spark runs them', { timeout: 60_000 }, () => {
  let root: string;
  let recipe: string;
  let debspawn: string;

  const job = (gitUrl: string): OsImageBuildJob => ({
    uuid: randomUUID(),
    module: 'default',
    kind: 'os-image-build',
    architecture: 'amd64',
    repo: 'master',
    data: {
      image_format: 'img',
      git_url: gitUrl,
      distribution: 'debian',
      suite: 'bookworm',
      environment: 'minimal',
      style: null,
      architecture: 'amd64',
    },
  });

  const build = async (gitUrl: string, globalConfig: string) => {
    const workspace = await mkdtemp(join(root, 'ws-'));
    const log = await openJobLog(join(workspace, 'job.log'));
    const outcome = await runImageBuild(
      {
        job: job(gitUrl),
        workspace,
        log,
        containerArchitecture: 'amd64',
        signal: new AbortController().signal,
        debspawn: { debspawn, useSudo: false, pathPrefix: null },
        idleOutputTimeoutMs: 30_000,
        killGraceMs: 500,
        downloadTimeouts: { connectMs: 5_000, idleMs: 5_000 },
        allowFileUrls: false,
      },
      { debspawnGlobalConfig: globalConfig },
    );
    await log.close();
    return { outcome, log: await readFile(log.path, 'utf8') };
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'spark-image-build-'));
    debspawn = join(root, 'debspawn');
    await writeFile(debspawn, FAKE_DEBSPAWN);
    await chmod(debspawn, 0o755);
    recipe = join(root, 'recipe');
    await mkdir(recipe);
    await writeFile(
      join(recipe, 'build.sh'),
      '#!/bin/sh\necho "recipe sees SPARK_ID=$SPARK_ID"\necho disk > "$SPARK_TEST_ARTIFACTS/test.img"\n',
    );
    await chmod(join(recipe, 'build.sh'), 0o755);
    await run('git', ['init', '-q', recipe]);
    await run('git', ['-C', recipe, 'add', '.']);
    await run('git', [
      '-C',
      recipe,
      '-c',
      'user.name=t',
      '-c',
      'user.email=t@example.org',
      'commit',
      '-q',
      '-m',
      'Recipe for a tiny image',
    ]);
  });
  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('rejects the job back when the recipe cannot be cloned (another try may reach the git server)', async () => {
    const { outcome, log } = await build(`file://${join(root, 'no-such-recipe')}`, join(root, 'absent.toml'));
    assert.equal(outcome.type, 'rejected');
    assert.match(
      outcome.type === 'rejected' ? outcome.reason : '',
      /^cannot clone the recipe file:\/\/.*no-such-recipe \(git exited with code 128\)$/,
    );
    assert.match(log, /fatal: .*no-such-recipe/);
  });

  it('logs the recipe commit, exports SPARK_ID and traces the command file with set -x', async () => {
    const { outcome, log } = await build(`file://${recipe}`, join(root, 'absent.toml'));
    assert.equal(outcome.type, 'built');
    assert.equal(outcome.type === 'built' ? outcome.result : '', 'success');
    const { stdout: commit } = await run('git', ['-C', recipe, 'log', '--pretty=oneline', '-1']);
    assert.ok(log.includes(commit), `the log holds the recipe commit ${commit}`);
    assert.match(log, /\$ git log --pretty=oneline -1\n[0-9a-f]{40} Recipe for a tiny image\n/);
    assert.match(SPARK_ID, /^spark-ts-\d+\.\d+\.\d+/);
    assert.ok(log.includes(`recipe sees SPARK_ID=${SPARK_ID}`));
    assert.match(log, /^\+ cd \//m);
    assert.match(log, /^\+ exec \.\/build\.sh$/m);
    assert.match(log, /running without kvm/);
    assert.doesNotMatch(log, /--allow=kvm/);
  });

  it('reads AllowUnsafePermissions from global.toml with a TOML parser, comments and spacing included', async () => {
    const log = await openJobLog(join(root, 'kvm.log'));
    const cases: [string, boolean][] = [
      ['AllowUnsafePermissions = true\n', true],
      ['AllowUnsafePermissions=true # kvm for image builds\n', true],
      ['# debspawn settings\nOsroot = "/srv/debspawn"\n\n  AllowUnsafePermissions   =   true\t\n', true],
      ['AllowUnsafePermissions = false\n', false],
      ['AllowUnsafePermissions = "true"\n', false],
      ['[section]\nAllowUnsafePermissions = true\n', false],
      ['AllowUnsafePermissions = tru\n', false],
    ];
    for (const [text, expected] of cases) {
      const file = join(root, `global-${randomUUID()}.toml`);
      await writeFile(file, text);
      assert.equal(await unsafePermissionsAllowed(log, file), expected, JSON.stringify(text));
    }
    assert.equal(await unsafePermissionsAllowed(log, join(root, 'absent.toml')), false);
    await log.close();
    assert.match(await readFile(log.path, 'utf8'), /cannot parse .*global-.*\.toml as TOML/);

    const allowed = join(root, 'allowed.toml');
    await writeFile(allowed, 'AllowUnsafePermissions = true # image builds need kvm\n');
    const { outcome, log: buildLog } = await build(`file://${recipe}`, allowed);
    assert.equal(outcome.type, 'built');
    assert.match(buildLog, /stand-in debspawn run .*--allow=kvm,read-kmods/);
  });
});
