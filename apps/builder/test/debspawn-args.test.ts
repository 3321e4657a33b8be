import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { PackageBuildJob } from '@spark/protocol';
import { debspawnCommand, nspawnWrapperDir, signalSudo } from '../src/debspawn-command.js';
import { debspawnBuildArgs } from '../src/package-build.js';

const job = (architecture: string, doIndep: boolean, maintainer: string | null = null): PackageBuildJob => ({
  uuid: '3f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b',
  module: 'default',
  kind: 'package-build',
  architecture,
  repo: 'master',
  data: {
    package_name: 'hello',
    package_version: '1:2.0-1',
    maintainer,
    suite: 'bookworm',
    dsc_url: 'http://x/hello_2.0-1.dsc',
    sha256sum: 'a'.repeat(64),
    do_indep: doIndep,
  },
});

describe('debspawn command line', () => {
  it('builds arch:all jobs with --only=indep in the host architecture image', () => {
    assert.deepEqual(debspawnBuildArgs(job('all', true), 'amd64', '/w/hello.dsc', '/w/results'), [
      'build',
      '--no-buildlog',
      '--arch=amd64',
      '--results-dir=/w/results',
      '--only=indep',
      'bookworm',
      '/w/hello.dsc',
    ]);
  });

  it('uses --only=arch without do_indep, --only=binary with it, and passes the maintainer', () => {
    assert.ok(debspawnBuildArgs(job('arm64', false), 'arm64', '/d', '/r').includes('--only=arch'));
    const args = debspawnBuildArgs(job('amd64', true, 'Jane <jane@example.org>'), 'amd64', '/d', '/r');
    assert.ok(args.includes('--only=binary'));
    assert.ok(args.includes('--maintainer=Jane <jane@example.org>'));
  });

  it('runs the build helper through sudo -n when not root, and puts the nspawn wrapper first on PATH otherwise', () => {
    const viaSudo = debspawnCommand({ debspawn: 'debspawn', useSudo: true, pathPrefix: null }, ['--version']);
    assert.equal(viaSudo.file, 'sudo');
    assert.deepEqual(viaSudo.args, ['-n', '/usr/local/sbin/spark-build-helper', '--version']);
    assert.equal(viaSudo.signalTree, signalSudo, 'a stop goes to sudo, which relays it to the helper');
    const direct = debspawnCommand({ debspawn: 'debspawn', useSudo: false, pathPrefix: '/opt/wrapper' }, ['list']);
    assert.equal(direct.file, 'debspawn');
    assert.match(direct.env?.['PATH'] ?? '', /^\/opt\/wrapper:/);
  });

  it("puts only the build helper's systemd-nspawn ahead of the host's tools when it runs debspawn itself", async () => {
    // The helper's dpkg-source and dpkg-parsechangelog work only in its sandbox: they must not be on this PATH.
    assert.deepEqual(await readdir(nspawnWrapperDir()), ['systemd-nspawn']);
    const direct = debspawnCommand({ debspawn: 'debspawn', useSudo: false, pathPrefix: nspawnWrapperDir() }, ['list']);
    const found = await promisify(execFile)('/bin/sh', ['-c', 'command -v systemd-nspawn && systemd-nspawn --version'], {
      env: { PATH: direct.env?.['PATH'] },
    });
    const [path, version] = found.stdout.split('\n');
    assert.equal(path, join(nspawnWrapperDir(), 'systemd-nspawn'));
    assert.match(version ?? '', /^systemd \d+/, "the wrapper runs the host's systemd-nspawn");
  });
});
