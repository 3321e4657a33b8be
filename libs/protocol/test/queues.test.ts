import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  jobArtifactsDir,
  jobLogFile,
  jobWorkspaceDir,
  manifestSchema,
  newRound,
  parseJobId,
  reportJobId,
  reportPayloadSchema,
  stageJobId,
  QUEUE_NAMES,
  REPORT_KINDS_OF,
  REPORT_QUEUE_NAMES,
  REPORT_SENDERS,
  QueueName,
} from '@spark/protocol';

const uuid = '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1';
const round = '1764405000123';
const r = { uuid, round };
const sha = 'b'.repeat(64);

describe('queues', () => {
  it('names the stage queues and a report queue per sender once each, report queues in the order a round passes the senders', () => {
    assert.deepEqual([...QUEUE_NAMES], ['build', 'sign', 'upload', 'report', 'report-builder', 'report-signer', 'report-uploader']);
    assert.equal(QueueName.sign, 'sign');
    assert.deepEqual([...REPORT_SENDERS], ['connector', 'builder', 'signer', 'uploader']);
    assert.deepEqual([...REPORT_QUEUE_NAMES], ['report', 'report-builder', 'report-signer', 'report-uploader']);
    // Only the uploader ends a round well; the builder never ends one but by rejecting it.
    assert.deepEqual(
      REPORT_SENDERS.filter((sender) => (REPORT_KINDS_OF[sender] as readonly string[]).includes('success')),
      ['connector', 'uploader'],
    );
    assert.deepEqual([...REPORT_KINDS_OF.builder], ['accepted', 'status', 'rejected']);
  });

  it('gives each stage of a round a fixed job id, and reads every id back', () => {
    const ids = {
      [stageJobId(r, 'build')]: { type: 'stage', stage: 'build' },
      [stageJobId(r, 'sign')]: { type: 'stage', stage: 'sign' },
      [stageJobId(r, 'upload')]: { type: 'stage', stage: 'upload' },
      [reportJobId(r, { kind: 'accepted' })]: { type: 'report', slot: { kind: 'accepted' } },
      [reportJobId(r, { kind: 'status', seq: 3 })]: { type: 'report', slot: { kind: 'status', seq: 3 } },
      [reportJobId(r, { kind: 'final' })]: { type: 'report', slot: { kind: 'final' } },
    };
    assert.deepEqual(Object.keys(ids), [
      `${uuid}.${round}`,
      `${uuid}.${round}.sign`,
      `${uuid}.${round}.upload`,
      `${uuid}.${round}.accepted`,
      `${uuid}.${round}.status.3`,
      `${uuid}.${round}.final`,
    ]);
    for (const [id, parsed] of Object.entries(ids)) assert.deepEqual(parseJobId(id), { uuid, round, ...parsed });
  });

  it('reads nothing it did not build', () => {
    for (const id of [
      uuid,
      `${uuid}.sign`,
      `${uuid}.${round}.status.0`,
      `${uuid}.x.sign`,
      `../${uuid}.${round}`,
      `${uuid}.${round}.final.x`,
      '',
    ]) {
      assert.equal(parseJobId(id), null, id);
    }
  });

  it('keeps two hand-outs of one uuid apart, even within one millisecond', () => {
    const first = newRound(uuid, 1000);
    const again = newRound(uuid, 1000, first.round);
    assert.notEqual(stageJobId(first, 'build'), stageJobId(again, 'build'));
    assert.notEqual(jobWorkspaceDir('/w', first), jobWorkspaceDir('/w', again));
    assert.equal(newRound(uuid, 5000, first.round).round, '5000');
  });

  it('puts files of a round under names built from the uuid and round only', () => {
    assert.equal(jobWorkspaceDir('/var/lib/lkspark/workspaces', r), `/var/lib/lkspark/workspaces/${uuid}.${round}`);
    assert.equal(jobArtifactsDir('/w', r), `/w/${uuid}.${round}/artifacts`);
    assert.equal(jobLogFile('/l', r), `/l/${uuid}.${round}.log`);
    assert.throws(() => jobWorkspaceDir('/w', { uuid: '../../etc', round }), /not a UUID/);
    assert.throws(() => jobLogFile('/l', { uuid, round: '1/../x' }), /not a hand-out time/);
  });
});

describe('manifestSchema', () => {
  const manifest = {
    uuid,
    round,
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
      { kind: 'accepted', uuid, round, at: 1 },
      { kind: 'status', uuid, round, at: 1, logExcerpt: 'x' },
      { kind: 'rejected', uuid, round, at: 1, reason: 'no image' },
      { kind: 'success', uuid, round, at: 1 },
      { kind: 'failed', uuid, round, at: 1, reason: 'FTBFS' },
    ]) {
      assert.equal(reportPayloadSchema.safeParse(report).success, true, report.kind);
    }
    assert.equal(reportPayloadSchema.safeParse({ kind: 'cancelled', uuid, at: 1 }).success, false);
    assert.equal(reportPayloadSchema.safeParse({ kind: 'accepted', uuid: '../x', at: 1 }).success, false);
  });
});
