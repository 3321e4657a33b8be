import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import {
  jobWorkspaceDir,
  QueueName,
  reportJobId,
  stageJobId,
  type Manifest,
  type ReportPayload,
  type UploadPayload,
} from '@spark/protocol';
import { createLogger } from '@spark/service';
import { buildBinaryLocally, FakeQueue, makeSourcePackage, mountTinyDisk, type FakeJob } from '@spark/testing';
import { openAuditLog, type AuditEntry, type SignatureEntry } from '../src/audit-log.js';
import { createSigner, DISK_FULL_GIVE_UP_MS, type Signer } from '../src/signer.js';
import { loadSigningKey } from '@spark/keys/signing-key';
import { FakeSignerRecords } from './fake-signer-records.js';
import { makeGpgHome, type GpgHome } from './gpg-home.js';
import { jobStager, listed, R, run, sha256, type Staged, type StageOptions } from './hostile-jobs.js';

const spec = { name: 'hello-signer', version: '1.0' };
/** What the signer's clock says, in every audit line and report. */
const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);
/** What the signer's clock says now: NOW, except while a test lets time pass. */
let now = NOW;

/*
 * The signer's logic on in-memory queues and records (fake-stage-queues.ts,
 * fake-signer-records.ts), with real gpg and real build results;
 * signer-redis.test.ts runs it on BullMQ and real Redis.
 */
describe('spark-signer on the sign queue', () => {
  let gpg: GpgHome;
  let tmp: string;
  let workspacesDir: string;
  /** Stages a new job (or `uuid`'s) as the builder leaves it for the signer: the build's files (or `files`), a log and a `.dud`, the job record. */
  let stage: (options?: StageOptions) => Promise<Staged>;
  let auditFile: string;
  let keyring: string;
  let fingerprint: string;
  let binaryChanges: string[];
  /** The source package's `.dsc`, as the builder keeps it for the signer. */
  let dsc: string;
  const signQueue = new FakeQueue();
  const uploadQueue = new FakeQueue();
  const reportQueue = new FakeQueue();
  const records = new FakeSignerRecords();
  let signer: Signer;

  before(async () => {
    gpg = await makeGpgHome();
    tmp = await mkdtemp(join(tmpdir(), 'spark-signer-'));
    workspacesDir = join(tmp, 'root', 'workspaces');
    auditFile = join(tmp, 'root', 'audit', 'signer.log');
    keyring = join(tmp, 'worker.gpg');
    fingerprint = await gpg.generate({ uid: 'Spark Worker <worker@example.org>', algo: 'rsa4096', usage: 'sign' });
    await gpg.exportSecret(fingerprint, join(tmp, 'worker_secret.gpg'));
    await gpg.exportKeyring([fingerprint], keyring);

    const pkgDir = join(tmp, 'pkg');
    await mkdir(pkgDir);
    const pkg = await makeSourcePackage(pkgDir, spec);
    dsc = pkg.dsc;
    binaryChanges = await listed(await buildBinaryLocally(pkg, spec));
    stage = jobStager(
      workspacesDir,
      () => ({ spec, dsc, files: binaryChanges }),
      (record) => Promise.resolve(records.write(record)),
    );

    const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });
    signer = createSigner({
      config: { workspacesDir },
      logger: createLogger('spark-signer', quiet),
      signingKey: await loadSigningKey({ keyFile: join(tmp, 'worker_secret.gpg'), keyId: fingerprint, passphraseFile: null }),
      audit: await openAuditLog(auditFile),
      signJobs: signQueue.retryingInbox(),
      uploads: uploadQueue,
      reports: reportQueue,
      records,
      clock: { now: () => now },
      ready: () => Promise.resolve(),
    });
    await signer.start();
  });

  after(async () => {
    await signer.close();
    await gpg.close();
    await rm(tmp, { recursive: true, force: true });
  });

  /** Queues the sign job of `manifest` and waits until the signer is done with it; returns what it handed to upload. */
  async function sign(manifest: Manifest): Promise<{ data: UploadPayload }> {
    const id = stageJobId(manifest, 'sign');
    await signQueue.add(QueueName.sign, { manifest }, { jobId: id });
    const done = await signQueue.settled(id);
    assert.equal(done.state, 'completed', `sign job failed: ${done.failedReason ?? ''}`);
    const upload = uploadQueue.job(stageJobId(manifest, 'upload')) ?? assert.fail('no upload job');
    return { data: upload.data as UploadPayload };
  }

  /** Queues `manifest`'s sign job as `jobId`, waits until it failed; returns the round's final report. */
  async function refused(
    manifest: unknown,
    jobId: string,
    round: { uuid: string; round: string },
  ): Promise<FakeJob & { data: ReportPayload }> {
    await signQueue.add(QueueName.sign, { manifest }, { jobId });
    assert.equal((await signQueue.settled(jobId)).state, 'failed');
    return (reportQueue.job(reportJobId(round, { kind: 'final' })) ?? assert.fail('no final report')) as FakeJob & { data: ReportPayload };
  }

  async function auditLines(uuid: string): Promise<AuditEntry[]> {
    const lines = (await readFile(auditFile, 'utf8')).split('\n').filter((line) => line !== '');
    return lines.map((line) => JSON.parse(line) as AuditEntry).filter((entry) => entry.uuid === uuid);
  }
  async function auditEntries(uuid: string): Promise<SignatureEntry[]> {
    return (await auditLines(uuid)).filter((entry): entry is SignatureEntry => entry.event === 'signed');
  }

  const gpgv = (file: string) => run('gpgv', ['--keyring', keyring, file]);
  const dscverify = (dir: string, file: string) =>
    run('dscverify', ['--no-conf', '--no-default-keyrings', '--keyring', keyring, file], { cwd: dir });

  async function assertManifestMatchesDisk(dir: string, manifest: Manifest): Promise<void> {
    for (const entry of manifest.files) {
      const data = await readFile(join(dir, entry.name));
      assert.deepEqual({ name: entry.name, size: data.length, sha256: sha256(data) }, entry);
    }
  }

  it('signs a dpkg-made binary .changes, its .buildinfo and the .dud so that gpgv and dscverify accept them', async () => {
    const { manifest, dir } = await stage();
    const upload = await sign(manifest);
    const signed = upload.data.manifest;
    assert.equal(records.signerRounds.get(manifest.uuid), R, 'the signer noted that it took the round');
    assert.deepEqual(
      signed.files.map((entry) => entry.name),
      manifest.files.map((entry) => entry.name),
    );
    await assertManifestMatchesDisk(dir, signed);

    const changes = signed.changes ?? assert.fail('no .changes');
    const buildinfo = signed.files.find((entry) => entry.name.endsWith('.buildinfo')) ?? assert.fail('no .buildinfo');
    for (const name of [changes, buildinfo.name, signed.dud]) {
      const { stderr } = await gpgv(join(dir, name));
      assert.match(stderr, new RegExp(`Good signature from "Spark Worker <worker@example.org>"`), name);
      assert.match(await readFile(join(dir, name), 'utf8'), /^-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n/);
    }
    const { stdout } = await dscverify(dir, changes);
    assert.match(stdout, /validating .*\.deb\n/);
    assert.match(stdout, /validating .*\.buildinfo\n/);
    assert.match(stdout, /All files validated successfully\./);

    const deb = signed.files.find((entry) => entry.name.endsWith('.deb')) ?? assert.fail('no .deb');
    assert.deepEqual(
      deb,
      manifest.files.find((entry) => entry.name === deb.name),
      'the .deb is handed on unchanged',
    );
    const audit = await auditEntries(manifest.uuid);
    assert.deepEqual(
      audit.map((entry) => entry.file),
      [buildinfo.name, changes, signed.dud],
    );
    for (const entry of audit) {
      assert.equal(entry.fingerprint, fingerprint);
      assert.equal(entry.time, new Date(NOW).toISOString(), 'the audit line has the signer clock’s time');
      assert.deepEqual(
        [entry.package, entry.version, entry.distribution, entry.repository, entry.round],
        [spec.name, spec.version, 'bookworm', 'master', R],
      );
      assert.equal(entry.sha256, signed.files.find((file) => file.name === entry.file)?.sha256);
    }
  });

  it('replaces the signatures of files that were signed before, leaving one signature each', async () => {
    const first = await stage();
    const signedOnce = (await sign(first.manifest)).data.manifest;
    const again = await stage({
      files: signedOnce.files
        .filter((entry) => !entry.name.endsWith('.dud') && !entry.name.endsWith('.log'))
        .map((entry) => join(first.dir, entry.name)),
    });
    const signedTwice = (await sign(again.manifest)).data.manifest;
    await assertManifestMatchesDisk(again.dir, signedTwice);
    for (const name of [signedTwice.changes ?? assert.fail('no .changes'), signedTwice.dud]) {
      const text = await readFile(join(again.dir, name), 'utf8');
      assert.equal(text.split('-----BEGIN PGP SIGNED MESSAGE-----').length, 2, `${name} has one signed message`);
      assert.equal(text.split('-----BEGIN PGP SIGNATURE-----').length, 2, `${name} has one signature`);
      await gpgv(join(again.dir, name));
    }
    const { stdout } = await dscverify(again.dir, signedTwice.changes ?? '');
    assert.match(stdout, /All files validated successfully\./);
  });

  it('signs again from the kept originals when a job is retried after its files were signed', async () => {
    const { manifest, dir } = await stage();
    await sign(manifest);
    // As if the hand-off had failed: no upload job, and BullMQ runs the sign job again.
    uploadQueue.remove(stageJobId(manifest, 'upload'));
    signQueue.remove(stageJobId(manifest, 'sign'));
    const signed = (await sign(manifest)).data.manifest;
    await assertManifestMatchesDisk(dir, signed);
    for (const name of [signed.changes ?? assert.fail('no .changes'), signed.dud]) {
      const text = await readFile(join(dir, name), 'utf8');
      assert.equal(text.split('-----BEGIN PGP SIGNATURE-----').length, 2, `${name} has one signature`);
    }
    const { stdout } = await dscverify(dir, signed.changes ?? '');
    assert.match(stdout, /All files validated successfully\./);
    assert.equal((await auditEntries(manifest.uuid)).length, 6);
  });

  it('refuses a sign job whose manifest names a path, reporting why', async () => {
    const uuid = randomUUID();
    const manifest = {
      uuid,
      round: R,
      repo: 'master',
      result: 'success',
      files: [{ name: '../../etc/passwd', size: 1, sha256: '0'.repeat(64) }],
      changes: null,
      dud: '../../etc/passwd',
    };
    const report = await refused(manifest, stageJobId({ uuid, round: R }, 'sign'), { uuid, round: R });
    assert.equal(report.data.kind, 'failed');
    assert.equal(report.data.at, NOW, 'the report has the signer clock’s time');
    assert.match(
      (report.data as { reason: string }).reason,
      /^signer refused the sign job: invalid payload: manifest\.files\.0\.name: "\.\.\/\.\.\/etc\/passwd" is not a valid file name/,
    );
  });

  describe('refuses, signs nothing and reports failed when', () => {
    const debOf = (manifest: Manifest) => manifest.files.find((entry) => entry.name.endsWith('.deb'))?.name ?? assert.fail('no .deb');
    const cases: {
      name: string;
      spoil: (manifest: Manifest, dir: string) => Promise<Manifest>;
      reason: (deb: string, manifest: Manifest) => RegExp;
    }[] = [
      {
        name: 'a .deb was changed after the build',
        spoil: async (manifest, dir) => {
          const file = join(dir, debOf(manifest));
          const data = await readFile(file);
          data.writeUInt8((data.readUInt8(data.length - 1) ^ 0xff) & 0xff, data.length - 1);
          await writeFile(file, data);
          return manifest;
        },
        reason: (deb) => new RegExp(`: ${escape(deb)}: SHA-256 is [0-9a-f]{64}, the manifest says [0-9a-f]{64}$`),
      },
      {
        name: 'a file of the manifest is missing',
        spoil: async (manifest, dir) => {
          await rm(join(dir, debOf(manifest)));
          return manifest;
        },
        reason: (deb) => new RegExp(`: ${escape(deb)}: missing from the job workspace$`),
      },
      {
        name: 'the .changes lists a file that is not in the manifest',
        spoil: (manifest) => Promise.resolve({ ...manifest, files: manifest.files.filter((entry) => entry.name !== debOf(manifest)) }),
        reason: (deb, manifest) => new RegExp(`: ${escape(deb)}: is listed in ${escape(manifest.changes ?? '')} but not in the manifest$`),
      },
      {
        name: 'a file is a symbolic link out of the workspace',
        spoil: async (manifest, dir) => {
          const deb = debOf(manifest);
          const outside = join(tmp, `outside-${manifest.uuid}.deb`);
          await copyFile(join(dir, deb), outside);
          await rm(join(dir, deb));
          await symlink(outside, join(dir, deb));
          return manifest;
        },
        reason: (deb) => new RegExp(`: ${escape(deb)}: is a symbolic link; only regular files in the workspace are signed$`),
      },
      {
        name: 'the .changes checksums do not match a file the manifest agrees with',
        spoil: async (manifest, dir) => {
          const deb = debOf(manifest);
          const data = Buffer.concat([await readFile(join(dir, deb)), Buffer.from('x')]);
          await writeFile(join(dir, deb), data);
          return {
            ...manifest,
            files: manifest.files.map((entry) => (entry.name === deb ? { name: deb, size: data.length, sha256: sha256(data) } : entry)),
          };
        },
        reason: (deb, manifest) =>
          new RegExp(`: ${escape(deb)}: ${escape(manifest.changes ?? '')} Files says [0-9a-f]{32} \\d+, the file has [0-9a-f]{32} \\d+$`),
      },
    ];

    for (const testCase of cases) {
      it(testCase.name, async () => {
        const staged = await stage();
        const manifest = await testCase.spoil(staged.manifest, staged.dir);
        const before = new Map(
          await Promise.all(
            (await readdir(staged.dir)).map(async (name) => [name, await readFile(join(staged.dir, name)).catch(() => null)] as const),
          ),
        );
        const report = await refused(manifest, stageJobId(manifest, 'sign'), manifest);
        assert.equal(report.data.kind, 'failed');
        assert.match((report.data as { reason: string }).reason, /^signer refused the build results, nothing was signed: /);
        assert.match((report.data as { reason: string }).reason, testCase.reason(debOf(staged.manifest), manifest));

        for (const [name, data] of before) {
          assert.deepEqual(await readFile(join(staged.dir, name)).catch(() => null), data, `${name} is unchanged`);
        }
        assert.deepEqual(await readdir(staged.dir), [...before.keys()]);
        assert.deepEqual(await auditEntries(manifest.uuid), []);
        const refusals = await auditLines(manifest.uuid);
        assert.equal(refusals.length, 1);
        assert.equal(refusals[0]?.event, 'refused');
        assert.equal(uploadQueue.job(stageJobId(manifest, 'upload')), undefined);
      });
    }
  });
  describe('on a full workspace disk', () => {
    /** Stages a job on a 1 MiB disk of its own and fills the disk; returns the job and what frees the space. */
    async function stageOnFullDisk(): Promise<{
      manifest: Manifest;
      dir: string;
      free: () => Promise<void>;
      unmount: () => Promise<void>;
    }> {
      const uuid = randomUUID();
      const workspace = jobWorkspaceDir(workspacesDir, { uuid, round: R });
      await mkdir(workspace, { recursive: true });
      const unmount = await mountTinyDisk(workspace, 1024 * 1024);
      const staged = await stage({ uuid });
      const filler = join(workspace, 'filler');
      const file = await open(filler, 'w');
      try {
        for (;;) await file.write(Buffer.alloc(64 * 1024, 1));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
      } finally {
        await file.close();
      }
      return { ...staged, free: () => rm(filler), unmount };
    }

    it('waits without failing the job, keeps the build, and signs it once there is space again', async () => {
      const { manifest, dir, free, unmount } = await stageOnFullDisk();
      try {
        const id = stageJobId(manifest, 'sign');
        await signQueue.add(QueueName.sign, { manifest }, { jobId: id });
        const waiting = await signQueue.reached(id, ['delayed']);
        assert.deepEqual(waiting.progress, {
          phase: 'disk-full',
          problem: 'the workspace disk is full (ENOSPC: no space left on device, write)',
          tries: 1,
          since: NOW,
          nextTryAt: NOW + 5_000,
          giveUpAt: NOW + DISK_FULL_GIVE_UP_MS,
        });
        assert.equal(waiting.retryAt, NOW + 5_000, 'the first wait is 5 s');
        assert.equal(uploadQueue.job(stageJobId(manifest, 'upload')), undefined, 'nothing is handed to upload');
        assert.equal(reportQueue.job(reportJobId(manifest, { kind: 'final' })), undefined, 'nothing is reported');
        await assertManifestMatchesDisk(dir, manifest);
        assert.deepEqual(
          (await readdir(dir)).filter((name) => name.startsWith('.')),
          [],
          'no half-written signed file is left',
        );

        await free();
        now = NOW + 5_000;
        signQueue.promoteDue({ now: () => now });
        const signed = (await sign(manifest)).data.manifest;
        await assertManifestMatchesDisk(dir, signed);
        for (const name of [signed.changes ?? assert.fail('no .changes'), signed.dud]) await gpgv(join(dir, name));
        const { stdout } = await dscverify(dir, signed.changes ?? '');
        assert.match(stdout, /All files validated successfully\./);
        // The audit also lists the signatures of the try that could not write them: the key made them.
        const audited = new Map((await auditEntries(manifest.uuid)).map((entry) => [entry.file, entry.sha256]));
        for (const name of [...audited.keys()]) assert.equal(audited.get(name), signed.files.find((entry) => entry.name === name)?.sha256);
        assert.equal(audited.size, 3);
      } finally {
        now = NOW;
        await unmount();
      }
    });

    it('reports the job failed when the disk stays full for six hours, the build left as it was', async () => {
      const { manifest, dir, unmount } = await stageOnFullDisk();
      try {
        const id = stageJobId(manifest, 'sign');
        await signQueue.add(QueueName.sign, { manifest }, { jobId: id });
        await signQueue.reached(id, ['delayed']);
        now = NOW + DISK_FULL_GIVE_UP_MS;
        signQueue.promoteDue({ now: () => now });
        const failed = await signQueue.settled(id);
        assert.equal(failed.state, 'failed');
        const report = reportQueue.job(reportJobId(manifest, { kind: 'final' })) ?? assert.fail('no final report');
        assert.equal((report.data as ReportPayload).kind, 'failed');
        assert.match(
          JSON.stringify(report.data),
          /signer could not write the signed files: the workspace disk is full \(ENOSPC: no space left on device, write\), and it stayed full for 6 h since the first try; the build's files were left as they were/,
        );
        await assertManifestMatchesDisk(dir, manifest);
        assert.equal(uploadQueue.job(stageJobId(manifest, 'upload')), undefined);
      } finally {
        now = NOW;
        await unmount();
      }
    });
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
