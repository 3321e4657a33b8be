import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PackageBuildJob } from '@spark/protocol';
import { debspawnCommand, signalSudo } from '../src/debspawn-command.js';
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
});
