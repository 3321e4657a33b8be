import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { archiveInfoReplySchema, lighthouseRequestSchema, MAX_REPLY_BYTES, parseReplyFrame, readJobReply } from '@spark/protocol';

const uuid = '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1';
const identity = { machine_name: 'hydrogen', machine_id: 'c05c855f-f940-5c59-abb6-b5c63d7d78e6' };

function packageJob(overrides: Record<string, unknown> = {}, data: Record<string, unknown> = {}) {
  return {
    uuid,
    module: 'rubicon',
    kind: 'package-build',
    version: '2.4-1',
    architecture: 'amd64',
    time_created: '2026-11-26T01:00:00',
    repo: 'master',
    data: {
      package_name: 'hello',
      package_version: '1:2.4-1',
      maintainer: 'Jane <jane@example.org>',
      suite: 'bookworm',
      dsc_url: 'https://archive.example.org/pool/main/h/hello/hello_2.4-1.dsc',
      sha256sum: 'a'.repeat(64),
      do_indep: true,
      ...data,
    },
    ...overrides,
  };
}

const imageJob = {
  uuid,
  module: 'isotope',
  kind: 'os-image-build',
  version: '1',
  architecture: 'amd64',
  time_created: null,
  repo: 'master',
  data: {
    image_format: 'iso',
    git_url: 'https://git.example.org/recipes.git',
    distribution: 'pureos',
    suite: 'byzantium',
    environment: 'gnome',
    style: 'oem',
    architecture: 'amd64',
  },
};

describe('readJobReply', () => {
  it('reads null as nothing to do', () => {
    assert.deepEqual(readJobReply(null), { type: 'none' });
  });

  it("passes Lighthouse's error in its own words", () => {
    assert.deepEqual(readJobReply({ error: 'Worker is not registered' }), { type: 'error', message: 'Worker is not registered' });
  });

  it('accepts a package-build job as Laniakea sends it', () => {
    const reply = readJobReply(packageJob());
    assert.equal(reply.type, 'job');
    assert.equal(reply.type === 'job' && reply.job.kind === 'package-build' && reply.job.data.package_version, '1:2.4-1');
  });

  it('accepts an os-image recipe at every address git clone takes, as spark passes it on', () => {
    for (const url of [
      'https://salsa.debian.org/images/recipes.git',
      'ssh://git@salsa.debian.org/images/recipes.git',
      'git@salsa.debian.org:images/recipes.git',
      'salsa.debian.org:images/recipes.git',
      'git://git.example.org/recipes',
      'file:///srv/recipes',
      '/srv/recipes.git',
    ]) {
      const reply = readJobReply({ ...imageJob, data: { ...imageJob.data, git_url: url } });
      assert.equal(reply.type, 'job', url);
    }
  });

  it('refuses a recipe address that runs a command or passes an option to git', () => {
    for (const url of ['ext::sh -c touch% /tmp/x', 'ext::true', '--upload-pack=touch /tmp/x', '-uhttps://x']) {
      const reply = readJobReply({ ...imageJob, data: { ...imageJob.data, git_url: url } });
      assert.equal(reply.type, 'invalid', url);
    }
  });

  it('accepts an os-image-build job', () => {
    assert.equal(readJobReply(imageJob).type, 'job');
  });

  const hostile: [string, unknown, RegExp, string | null][] = [
    [
      'rejects a job whose uuid is a path',
      packageJob({ uuid: '../../etc/passwd' }),
      /uuid: "\.\.\/\.\.\/etc\/passwd" is not a valid UUID/,
      null,
    ],
    ['rejects a uuid with a newline', packageJob({ uuid: `${uuid}\n` }), /uuid: .* is not a valid UUID/, null],
    ['rejects a numeric uuid', packageJob({ uuid: 42 }), /uuid: /, null],
    ['rejects an unknown kind by its uuid', packageJob({ kind: 'rm-rf' }), /unknown job kind "rm-rf"/, uuid],
    ['rejects a job without repo', packageJob({ repo: null }), /names no repository/, uuid],
    [
      'rejects a package name with a slash',
      packageJob({}, { package_name: 'hello/../../x' }),
      /data.package_name: .* is not a valid Debian package name/,
      uuid,
    ],
    ['rejects a suite with traversal', packageJob({}, { suite: '../sid' }), /data.suite: .* is not a valid suite name/, uuid],
    [
      'rejects an architecture with a NUL byte',
      packageJob({ architecture: 'amd64\u0000' }),
      /architecture: .* is not a valid Debian architecture name/,
      uuid,
    ],
    ['rejects a version with spaces', packageJob({}, { package_version: '1.0 --rm' }), /package_version/, uuid],
    [
      'rejects a dsc_url that is not http(s)',
      packageJob({}, { dsc_url: 'ftp://x/y.dsc' }),
      /dsc_url: is not an http\(s\) or file URL/,
      uuid,
    ],
    ['rejects a sha256sum of the wrong length', packageJob({}, { sha256sum: 'abc' }), /sha256sum/, uuid],
    ['rejects do_indep as a string', packageJob({}, { do_indep: 'yes' }), /do_indep/, uuid],
    ['rejects data that is not an object', packageJob({ data: 'x' }), /data: /, uuid],
    ['rejects a reply that is an array', [packageJob()], /malformed job/, null],
    ['rejects a reply that is a number', 7, /malformed job/, null],
    [
      'rejects an os-image job whose git_url carries spaces',
      { ...imageJob, data: { ...imageJob.data, git_url: 'https://x --upload-pack=touch' } },
      /git_url/,
      uuid,
    ],
    ['rejects a repo name with a slash', packageJob({ repo: 'master/../x' }), /repo: .* is not a valid repository name/, uuid],
  ];
  for (const [name, value, reason, expectedUuid] of hostile) {
    it(name, () => {
      const reply = readJobReply(value);
      assert.equal(reply.type, 'invalid');
      if (reply.type !== 'invalid') return;
      assert.match(reply.reason, reason);
      assert.equal(reply.uuid, expectedUuid);
    });
  }
});

describe('parseReplyFrame', () => {
  it('reads JSON and an empty frame', () => {
    assert.deepEqual(parseReplyFrame(Buffer.from('{"a":1}')), { ok: true, value: { a: 1 } });
    assert.deepEqual(parseReplyFrame(Buffer.alloc(0)), { ok: true, value: undefined });
  });

  it('says when a reply is not JSON', () => {
    const result = parseReplyFrame('{"uuid": ');
    assert.equal(result.ok, false);
    assert.match(!result.ok ? result.reason : '', /^reply is not JSON: /);
  });

  it('refuses a huge reply before parsing it', () => {
    const result = parseReplyFrame(Buffer.alloc(MAX_REPLY_BYTES + 1, 0x20));
    assert.deepEqual(result, { ok: false, reason: `reply of ${MAX_REPLY_BYTES + 1} bytes exceeds the ${MAX_REPLY_BYTES}-byte limit` });
  });
});

describe('lighthouseRequestSchema', () => {
  it('accepts every request the worker sends', () => {
    for (const request of [
      { request: 'archive-info', ...identity },
      { request: 'job', owner: 'ACME', accepts: ['package-build'], architectures: ['amd64'], ...identity },
      { request: 'job-accepted', uuid, ...identity },
      { request: 'job-rejected', uuid, ...identity },
      { request: 'job-status', uuid, log_excerpt: 'building…', ...identity },
      { request: 'job-success', uuid, ...identity },
      { request: 'job-failed', uuid, ...identity },
    ]) {
      assert.equal(lighthouseRequestSchema.safeParse(request).success, true, request.request);
    }
  });

  it('refuses a request without machine identity or with an unknown name', () => {
    assert.equal(lighthouseRequestSchema.safeParse({ request: 'job-accepted', uuid }).success, false);
    assert.equal(lighthouseRequestSchema.safeParse({ request: 'job-maybe', uuid, ...identity }).success, false);
  });
});

describe('archiveInfoReplySchema', () => {
  it('accepts upload targets whose fqdn carries a path', () => {
    const info = { archive_repos: { master: { upload_fqdn: 'laniakea.example.org/_upload', upload_method: 'https' } } };
    assert.deepEqual(archiveInfoReplySchema.parse(info), info);
  });

  it('refuses an unknown method, a URL with credentials, and a repo name with a slash', () => {
    const bad = [
      { archive_repos: { master: { upload_fqdn: 'x.org', upload_method: 'ftp' } } },
      { archive_repos: { master: { upload_fqdn: 'user:pw@x.org', upload_method: 'https' } } },
      { archive_repos: { 'a/b': { upload_fqdn: 'x.org', upload_method: 'https' } } },
    ];
    for (const value of bad) assert.equal(archiveInfoReplySchema.safeParse(value).success, false, JSON.stringify(value));
  });
});
