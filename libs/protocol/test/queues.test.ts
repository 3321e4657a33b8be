import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { manifestSchema, reportJobId, reportPayloadSchema, stageJobId, QUEUE_NAMES, QueueName } from '@spark/protocol';

const uuid = '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1';
const sha = 'b'.repeat(64);

describe('queues', () => {
  it('names the four pipeline queues once each', () => {
    assert.deepEqual([...QUEUE_NAMES], ['build', 'sign', 'upload', 'report']);
    assert.equal(QueueName.sign, 'sign');
  });

  it('gives each stage a deterministic job id', () => {
    assert.equal(stageJobId(uuid, 'build'), uuid);
    assert.equal(stageJobId(uuid, 'sign'), `${uuid}.sign`);
    assert.equal(stageJobId(uuid, 'upload'), `${uuid}.upload`);
    assert.equal(reportJobId({ kind: 'accepted', uuid, at: 1 }), `${uuid}.accepted`);
    assert.equal(reportJobId({ kind: 'failed', uuid, at: 1, reason: 'x' }), `${uuid}.final`);
    assert.equal(reportJobId({ kind: 'status', uuid, at: 1, logExcerpt: '' }, 3), `${uuid}.status.3`);
  });
});

describe('manifestSchema', () => {
  const manifest = {
    uuid,
    repo: 'master',
    result: 'success',
    files: [
      { name: 'hello_1.0_amd64.deb', size: 10, sha256: sha },
      { name: 'hello_1.0_amd64.changes', size: 5, sha256: sha },
      { name: `hello_1.0_amd64.${uuid}.dud`, size: 5, sha256: sha },
    ],
    changes: 'hello_1.0_amd64.changes',
    dud: `hello_1.0_amd64.${uuid}.dud`,
  };

  it('accepts a manifest whose control files are among its files', () => {
    assert.equal(manifestSchema.safeParse(manifest).success, true);
  });

  it('refuses file names that are paths, dot-dot or carry control characters', () => {
    for (const name of ['../etc/passwd', '/etc/passwd', 'a/b.deb', '..', 'x\nKey: v', 'x\u0000.deb', '.hidden', 'a..b.deb']) {
      const bad = { ...manifest, files: [...manifest.files, { name, size: 1, sha256: sha }] };
      assert.equal(manifestSchema.safeParse(bad).success, false, JSON.stringify(name));
    }
  });

  it('refuses a .changes that is not among the files, and duplicates', () => {
    const result = manifestSchema.safeParse({ ...manifest, changes: 'other_1.0_amd64.changes' });
    assert.equal(result.success, false);
    assert.match(result.error?.issues[0]?.message ?? '', /other_1\.0_amd64\.changes is not among the manifest's files/);
    assert.equal(manifestSchema.safeParse({ ...manifest, files: [...manifest.files, manifest.files[0]] }).success, false);
  });

  it('refuses negative sizes, bad digests and unknown results', () => {
    assert.equal(manifestSchema.safeParse({ ...manifest, result: 'meh' }).success, false);
    assert.equal(manifestSchema.safeParse({ ...manifest, files: [{ ...manifest.files[0], size: -1 }] }).success, false);
    assert.equal(manifestSchema.safeParse({ ...manifest, files: [{ ...manifest.files[0], sha256: 'XYZ' }] }).success, false);
  });
});

describe('reportPayloadSchema', () => {
  it('accepts each report kind and refuses an unknown one', () => {
    for (const report of [
      { kind: 'accepted', uuid, at: 1 },
      { kind: 'status', uuid, at: 1, logExcerpt: 'x' },
      { kind: 'rejected', uuid, at: 1, reason: 'no image' },
      { kind: 'success', uuid, at: 1 },
      { kind: 'failed', uuid, at: 1, reason: 'FTBFS' },
    ]) {
      assert.equal(reportPayloadSchema.safeParse(report).success, true, report.kind);
    }
    assert.equal(reportPayloadSchema.safeParse({ kind: 'cancelled', uuid, at: 1 }).success, false);
    assert.equal(reportPayloadSchema.safeParse({ kind: 'accepted', uuid: '../x', at: 1 }).success, false);
  });
});
