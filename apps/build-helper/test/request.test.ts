import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseHelperOptions, parseRequest, RefusedRequest } from '@spark/build-helper';

const ws = '/var/lib/lkspark/workspaces/3f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b';
const build = [
  'build',
  '--no-buildlog',
  '--arch=amd64',
  `--results-dir=${ws}/results`,
  '--only=binary',
  '--maintainer=Jane Doe <jane@example.org>',
  'bookworm',
  `${ws}/source/hello_1.0-1.dsc`,
];
const imageRun = [
  'run',
  '--external-command',
  '--arch=amd64',
  '--artifacts-out',
  `${ws}/image`,
  '--build-dir',
  `${ws}/ib`,
  '--allow=kvm,read-kmods',
  '--cachekey',
  'bookworm-mkimage-iso-plasma-any',
  '--init-command',
  `${ws}/prepare-command.sh`,
  '--header=PureOS ISO image build for bookworm plasma []',
  'bookworm',
  `${ws}/build-command.sh`,
];

function refused(args: string[], message: RegExp): void {
  assert.throws(
    () => parseRequest(args),
    (error: unknown) => error instanceof RefusedRequest && message.test(error.message),
  );
}

describe('the requests the helper accepts', () => {
  it('accepts the builder package build and reads every argument', () => {
    assert.deepEqual(parseRequest(build), {
      kind: 'build',
      arch: 'amd64',
      only: 'binary',
      maintainer: 'Jane Doe <jane@example.org>',
      suite: 'bookworm',
      dsc: `${ws}/source/hello_1.0-1.dsc`,
      resultsDir: `${ws}/results`,
    });
  });

  it('accepts the builder image run with its fixed arguments', () => {
    const request = parseRequest(imageRun);
    assert.equal(request.kind, 'image-run');
    assert.deepEqual(request.kind === 'image-run' && request.init, {
      cacheKey: 'bookworm-mkimage-iso-plasma-any',
      command: `${ws}/prepare-command.sh`,
    });
    assert.deepEqual(parseRequest(['--version']), { kind: 'version' });
  });
});

describe('the requests the helper refuses', () => {
  it('refuses other debspawn subcommands: login, create, update, list, delete', () => {
    for (const sub of ['login', 'create', 'update', 'list', 'delete', 'maintain', 'ls']) refused([sub, 'bookworm'], /is not allowed/);
    refused([], /is not allowed/);
  });

  it('refuses debspawn run with other arguments: a shell, other options, another allow list', () => {
    refused(
      ['run', '--arch=amd64', '--artifacts-out', `${ws}/image`, '--build-dir', `${ws}/ib`, '--header=x', 'bookworm', '/bin/sh'],
      /only --external-command/,
    );
    refused([...imageRun.slice(0, 2), '--bind-rw=/etc', ...imageRun.slice(2)], /option --bind-rw is not allowed/);
    refused(
      imageRun.map((arg) => (arg === '--allow=kvm,read-kmods' ? '--allow=all' : arg)),
      /only kvm,read-kmods/,
    );
    refused(
      imageRun.filter((arg, i) => !(arg === '--cachekey' || imageRun[i - 1] === '--cachekey')),
      /go together/,
    );
  });

  it('refuses build options the builder never passes', () => {
    refused([...build.slice(0, 1), '--buildlog-dir=/etc', ...build.slice(1)], /option --buildlog-dir is not allowed/);
    refused(
      build.map((arg) => (arg === '--only=binary' ? '--only=source' : arg)),
      /--only=source/,
    );
    refused([...build, 'extra'], /a suite and a \.dsc/);
    refused(
      build.filter((arg) => !arg.startsWith('--results-dir')),
      /--results-dir is required/,
    );
    refused([...build.slice(0, 2), '--arch=amd64', ...build.slice(2)], /given twice/);
  });

  it('refuses bad suite and architecture names and multi-line text', () => {
    refused(
      build.map((arg) => (arg === 'bookworm' ? '../bookworm' : arg)),
      /not a valid suite name/,
    );
    refused(
      build.map((arg) => (arg === '--arch=amd64' ? '--arch=amd64;rm' : arg)),
      /not a valid architecture name/,
    );
    refused(
      build.map((arg) => (arg.startsWith('--maintainer') ? '--maintainer=a\nb' : arg)),
      /one line/,
    );
  });

  it('refuses relative paths, .. and // in paths, and a .dsc that is not one', () => {
    refused(
      build.map((arg) => (arg.endsWith('.dsc') ? 'source/hello_1.0-1.dsc' : arg)),
      /absolute path/,
    );
    refused(
      build.map((arg) => (arg.endsWith('.dsc') ? `${ws}/../other/hello_1.0-1.dsc` : arg)),
      /absolute path without/,
    );
    refused(
      build.map((arg) => (arg.startsWith('--results-dir') ? `--results-dir=${ws}//results` : arg)),
      /absolute path without/,
    );
    refused(
      build.map((arg) => (arg.endsWith('.dsc') ? `${ws}/source/shadow` : arg)),
      /not a \.dsc file/,
    );
    refused(
      imageRun.map((arg) => (arg === `${ws}/ib` ? '/etc/laniakea/../laniakea/keys' : arg)),
      /absolute path without/,
    );
  });

  it('refuses its own options (config, owner) under sudo', () => {
    assert.throws(
      () => parseHelperOptions(['--config', '/tmp/spark.toml', ...build], { SUDO_UID: '997', SUDO_GID: '996' }),
      /--config is not accepted through sudo/,
    );
    const { options, request } = parseHelperOptions(build, { SUDO_UID: '997', SUDO_GID: '996' });
    assert.deepEqual(options.caller, { uid: 997, gid: 996 });
    assert.deepEqual(request, build);
  });
});
