import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmod, copyFile, link, mkdir, mkdtemp, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  parseControlFile,
  QueueName,
  reportJobId,
  stageJobId,
  type JobRecord,
  type Manifest,
  type NewJobRecord,
  type ReportPayload,
  type UploadPayload,
} from '@spark/protocol';
import { createLogger } from '@spark/service';
import { FakeQueue } from '@spark/testing';
import { AuditLogError, openAuditLog, type AuditEntry, type RefusalEntry, type SignatureEntry } from '../src/audit-log.js';
import { createSigner, type Signer } from '../src/signer.js';
import { loadSigningKey } from '@spark/keys/signing-key';
import { FakeSignerRecords } from './fake-signer-records.js';
import { makeGpgHome, type GpgHome } from './gpg-home.js';
import {
  auditLines as auditLinesIn,
  buildHostile,
  buildMulti,
  entryOf,
  escape,
  jobStager,
  listedName,
  R,
  replaceListed,
  rewrite,
  rewriteBuildinfo,
  run,
  setField,
  sha256,
  snapshot,
  spec,
  type Built,
  type Staged,
} from './hostile-jobs.js';

/*
 * A compromised builder owns the workspaces and writes the manifest, the
 * `.changes` and the `.dud` (docs/architecture.md, "Trust boundary"). Each case
 * here is one thing such a builder tries; each must be refused with a failed
 * report and an audit line, nothing signed, nothing written outside the job's
 * own artifacts — and an honest job after all of them still goes through.
 * The signer's logic runs on in-memory queues and records (fake-stage-queues.ts,
 * fake-signer-records.ts), with real files, real gpg and gpgv; what the
 * builder's Redis credentials cannot do is builder-redis-acl.test.ts's.
 */

/** What the signer's clock says, in every audit line and report. */
const NOW = Date.UTC(2026, 10, 30, 12, 0, 0);

describe('a hostile builder against the signer', () => {
  let gpg: GpgHome;
  let tmp: string;
  let workspacesDir: string;
  let auditFile: string;
  let keyring: string;
  let sourceChanges: string[];
  /** hello-hostile built as the other tests expect it (`dpkg-buildpackage -b`). */
  let hostile: Built;
  /** hello-multi built as debspawn's --only=binary, --only=arch and --only=indep build it. */
  let multi: Record<'binary' | 'arch' | 'indep', Built>;
  /** The job records and upload targets the connector wrote, and the rounds the signer took. */
  const records = new FakeSignerRecords();
  /** The `sign` queue, where the builder hands its results on. */
  const signQueue = new FakeQueue();
  const uploadQueue = new FakeQueue();
  const reportQueue = new FakeQueue();
  let signer: Signer;
  /** Runs inside the signer after every check passed, before it signs: where a racing builder strikes. */
  let hook: (() => Promise<void>) | null = null;
  let stage: (options?: Parameters<ReturnType<typeof jobStager>>[0]) => Promise<Staged>;

  before(async () => {
    gpg = await makeGpgHome();
    tmp = await mkdtemp(join(tmpdir(), 'spark-hostile-'));
    workspacesDir = join(tmp, 'root', 'workspaces');
    await mkdir(workspacesDir, { recursive: true });
    auditFile = join(tmp, 'signer-logs', 'signer.log');
    keyring = join(tmp, 'worker.gpg');
    const fingerprint = await gpg.generate({ uid: 'Spark Worker <worker@example.org>', algo: 'ed25519', usage: 'sign' });
    await gpg.exportSecret(fingerprint, join(tmp, 'worker_secret.gpg'));
    await gpg.exportKeyring([fingerprint], keyring);

    [{ hostile, sourceChanges }, multi] = await Promise.all([buildHostile(join(tmp, 'pkg')), buildMulti(tmp)]);
    stage = jobStager(
      workspacesDir,
      () => hostile,
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
      clock: { now: () => NOW },
      ready: () => Promise.resolve(),
      afterChecks: () => hook?.() ?? Promise.resolve(),
    });
    await signer.start();
    // What the connector stores from Lighthouse's archive-info for `master`.
    records.uploadTargets.set('master', 'https://archive.example.org/_upload');
  });

  after(async () => {
    await signer.close();
    await gpg.close();
    await rm(tmp, { recursive: true, force: true });
  });

  const auditLines = (uuid: string): Promise<AuditEntry[]> => auditLinesIn(auditFile, uuid);

  /** Queues the sign job of `manifest` and waits until the signer is done with it; returns its state. */
  async function signJob(manifest: Manifest): Promise<string> {
    const id = stageJobId(manifest, 'sign');
    await signQueue.add(QueueName.sign, { manifest }, { jobId: id });
    return (await signQueue.settled(id)).state;
  }

  /** Hands the manifest to the signer; expects it signed, and returns the manifest it handed to upload. */
  async function expectSigned(manifest: Manifest): Promise<Manifest> {
    const id = stageJobId(manifest, 'sign');
    await signQueue.add(QueueName.sign, { manifest }, { jobId: id });
    const done = await signQueue.settled(id);
    assert.equal(done.state, 'completed', `sign job failed: ${done.failedReason ?? ''}`);
    const upload = uploadQueue.job(stageJobId(manifest, 'upload')) ?? assert.fail('no upload job');
    return (upload.data as UploadPayload).manifest;
  }

  /** Hands the manifest to the signer; expects a failed report saying `reason`, a refusal audit line, nothing signed. */
  async function expectRefused(manifest: Manifest, reason: RegExp): Promise<RefusalEntry> {
    assert.equal(await signJob(manifest), 'failed');
    const report = (reportQueue.job(reportJobId(manifest, { kind: 'final' })) ?? assert.fail('no final report')).data as ReportPayload;
    assert.equal(report.kind, 'failed');
    const text = (report as { reason: string }).reason;
    assert.match(text, /^signer refused the build results, nothing was signed: /);
    assert.match(text, reason);
    const audit = await auditLines(manifest.uuid);
    assert.deepEqual(
      audit.map((entry) => entry.event),
      ['refused'],
      'one refusal line, no signature',
    );
    const refusal = audit[0] as RefusalEntry;
    assert.equal(refusal.reason, text);
    assert.equal(uploadQueue.job(stageJobId(manifest, 'upload')), undefined, 'nothing handed to upload');
    return refusal;
  }

  /** Runs `attempt` against a staged job and checks that nothing under the workspace root changed. */
  async function refusedUnchanged(staged: Staged, manifest: Manifest, reason: RegExp): Promise<void> {
    const before = await snapshot(tmp);
    await expectRefused(manifest, reason);
    const afterwards = await snapshot(tmp);
    afterwards.delete(join('signer-logs', 'signer.log'));
    before.delete(join('signer-logs', 'signer.log'));
    assert.deepEqual(afterwards, before, 'no file anywhere was created, changed or removed');
  }

  describe('a job that is not the one Lighthouse handed out', () => {
    it('refuses a job the connector has no record of', async () => {
      const staged = await stage();
      records.delete(staged.manifest.uuid);
      await refusedUnchanged(staged, staged.manifest, /job: no job record for [0-9a-f-]+: this worker's connector did not hand it out/);
    });

    it('refuses a round that is not the record\u2019s current round', async () => {
      const staged = await stage({ record: { round: String(Number(R) + 1) } });
      await refusedUnchanged(staged, staged.manifest, new RegExp(`job: round ${R} is not the job's current round \\(${Number(R) + 1}\\)$`));
    });

    it('refuses a manifest that sends the results to another repository', async () => {
      const staged = await stage();
      await refusedUnchanged(
        staged,
        { ...staged.manifest, repo: 'other' },
        /job: the manifest names repository other, the job was handed out for master$/,
      );
    });
  });

  describe('a .changes for something else', () => {
    const cases: { name: string; field: string; value: string; reason: RegExp }[] = [
      {
        name: 'another package',
        field: 'Source',
        value: 'openssh',
        reason: /Source is "openssh", the job was handed out for "hello-hostile"$/,
      },
      { name: 'another version', field: 'Version', value: '1:9.9-1', reason: /Version is "1:9.9-1", the job was handed out for "1.0"$/ },
      {
        name: 'another suite',
        field: 'Distribution',
        value: 'sid',
        reason: /Distribution is "sid", the job was handed out for "bookworm"$/,
      },
      {
        name: 'another architecture',
        field: 'Architecture',
        value: 'i386',
        reason: /Architecture names i386; a amd64 job may upload amd64, all$/,
      },
      {
        name: 'a source upload',
        field: 'Architecture',
        value: 'source amd64',
        reason: /Architecture names source; a amd64 job may upload amd64, all$/,
      },
    ];
    for (const testCase of cases) {
      it(`refuses a .changes for ${testCase.name}`, async () => {
        const staged = await stage();
        const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField(testCase.field, testCase.value));
        await refusedUnchanged(staged, manifest, testCase.reason);
      });
    }

    it('refuses arch-indep packages from a job without do_indep (debspawn --only=arch)', async () => {
      const staged = await stage({ record: { doIndep: false } });
      const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField('Architecture', 'amd64 all'));
      await refusedUnchanged(staged, manifest, /Architecture names all; a amd64 job without do_indep may upload amd64$/);
    });

    it('refuses amd64 packages from an arch-indep job (debspawn --only=indep)', async () => {
      const staged = await stage({ record: { architecture: 'all' }, dudArchitecture: 'all' });
      await refusedUnchanged(staged, staged.manifest, /Architecture names amd64; a all job may upload all$/);
    });

    it('refuses a .changes that carries the source, even when its Architecture hides it', async () => {
      const staged = await stage({ files: sourceChanges });
      const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField('Architecture', 'amd64'));
      await refusedUnchanged(
        staged,
        manifest,
        /lists hello-hostile_1\.0\.dsc: the builder builds binaries, this would be a source upload$/,
      );
    });
  });

  describe('a .dud for something else', () => {
    it('refuses a .dud of another job', async () => {
      const staged = await stage();
      const other = randomUUID();
      const manifest = await rewrite(staged, staged.manifest.dud, setField('X-Spark-Job', other));
      await refusedUnchanged(
        staged,
        manifest,
        new RegExp(`\\.dud: X-Spark-Job is "${other}", not this job \\(${staged.manifest.uuid}\\)$`),
      );
    });

    it('refuses an X-Spark-Result that is not success, failure or depwait', async () => {
      const staged = await stage();
      const manifest = await rewrite(staged, staged.manifest.dud, setField('X-Spark-Result', 'accepted'));
      await refusedUnchanged(staged, manifest, /\.dud: X-Spark-Result is "accepted", not one of success, failure, depwait$/);
    });

    it('refuses an X-Spark-Result that is not the manifest\u2019s result', async () => {
      const staged = await stage();
      const manifest = await rewrite(staged, staged.manifest.dud, setField('X-Spark-Result', 'failure'));
      await refusedUnchanged(staged, manifest, /\.dud: X-Spark-Result is failure, the manifest says success$/);
    });
  });

  describe('a .buildinfo that is not this build\u2019s (the signer would sign it with the archive key)', () => {
    it('refuses a .changes of another upload listed as the .buildinfo (a signing oracle)', async () => {
      const staged = await stage();
      // A source upload of this very package: signed by the worker key, the archive would take it.
      const sourceUpload = sourceChanges.find((file) => file.endsWith('.changes')) ?? assert.fail('no source .changes');
      const buildinfo = listedName(staged, '.buildinfo');
      const manifest = await replaceListed(staged, buildinfo, await readFile(sourceUpload));
      await refusedUnchanged(
        staged,
        manifest,
        new RegExp(`: ${escape(buildinfo)}: has a Files field: it is a \\.changes, \\.dsc or \\.dud, not a \\.buildinfo$`),
      );
    });

    const cases: { name: string; content: (staged: Staged, buildinfo: string) => Promise<string>; reason: RegExp }[] = [
      {
        name: 'a .dud of another job',
        content: async (staged) =>
          (await readFile(join(staged.dir, staged.manifest.dud), 'utf8')).replace(staged.manifest.uuid, randomUUID()),
        reason: /has a Files field: it is a \.changes, \.dsc or \.dud, not a \.buildinfo$/,
      },
      {
        name: 'a .changes stripped of its Files, made Format 1.0',
        content: async (staged) =>
          (await readFile(join(staged.dir, staged.manifest.changes ?? ''), 'utf8'))
            .replace(/^Files:\n( .*\n)+/m, '')
            .replace(/^Format: .*$/m, 'Format: 1.0'),
        reason: /has a Distribution field: it is a \.changes, \.dsc or \.dud, not a \.buildinfo$/,
      },
      {
        name: 'the .dsc of the source',
        content: (staged) => readFile(staged.dsc, 'utf8'),
        reason: /has a Files field: it is a \.changes, \.dsc or \.dud, not a \.buildinfo$/,
      },
      {
        name: 'a .buildinfo that says Format 1.8, as a .changes does',
        content: async (staged, buildinfo) => setField('Format', '1.8')(await readFile(join(staged.dir, buildinfo), 'utf8')),
        reason: /Format is "1\.8", not a \.buildinfo's \(1\.0\)$/,
      },
      {
        name: 'free text',
        content: () => Promise.resolve('I, the archive, vouch for whatever follows.\n'),
        reason: /is not a valid control file: line 1: expected "Field: value"/,
      },
      {
        name: 'two paragraphs',
        content: async (staged, buildinfo) => `${await readFile(join(staged.dir, buildinfo), 'utf8')}\nFormat: 1.8\nSource: coreutils\n`,
        reason: /has 2 paragraphs, expected one$/,
      },
    ];
    for (const testCase of cases) {
      it(`refuses ${testCase.name} listed as the .buildinfo`, async () => {
        const staged = await stage();
        const buildinfo = listedName(staged, '.buildinfo');
        const manifest = await replaceListed(staged, buildinfo, await testCase.content(staged, buildinfo));
        await refusedUnchanged(staged, manifest, new RegExp(`: ${escape(buildinfo)}: ${testCase.reason.source}`));
      });
    }

    const edits: { name: string; edit: (text: string) => string; reason: RegExp }[] = [
      { name: 'another source', edit: setField('Source', 'coreutils'), reason: /Source is coreutils, the job builds hello-hostile$/ },
      {
        name: 'another source version',
        edit: setField('Source', 'hello-hostile (0.9)'),
        reason: /Source is hello-hostile \(0\.9\), the job builds hello-hostile 1\.0$/,
      },
      { name: 'another version', edit: setField('Version', '9.9'), reason: /Version is 9\.9, the job builds hello-hostile 1\.0$/ },
      {
        name: 'an architecture the .changes does not upload',
        edit: setField('Architecture', 'amd64 i386'),
        reason: /Architecture names i386, hello-hostile_1\.0_amd64\.changes uploads amd64$/,
      },
      {
        name: 'a binary package the source does not build',
        edit: setField('Binary', 'hello-hostile coreutils'),
        reason: /Binary names coreutils, which hello-hostile does not build \(its \.dsc lists hello-hostile\)$/,
      },
      {
        name: 'checksums of a file outside the .changes',
        edit: (text) => text.replace(/^Checksums-Sha256:\n/m, `Checksums-Sha256:\n ${'c'.repeat(64)} 1234 coreutils_9.9_amd64.deb\n`),
        reason: /Checksums-Sha256 names coreutils_9\.9_amd64\.deb, which hello-hostile_1\.0_amd64\.changes does not upload$/,
      },
      {
        name: 'checksums of the .dud\u2019s log (a file of the job, but not of the .changes)',
        edit: (text) => text.replace(/^Checksums-Md5:\n/m, `Checksums-Md5:\n ${'0'.repeat(32)} 45 LOG\n`),
        reason: /Checksums-Md5 names [0-9a-f-]{36}\.log, which hello-hostile_1\.0_amd64\.changes does not upload$/,
      },
      {
        name: 'a checksum that is not the file\u2019s',
        edit: (text) => text.replace(/^(Checksums-Sha256:\n )[0-9a-f]{64}/m, `$1${'d'.repeat(64)}`),
        reason: /Checksums-Sha256 says d{64} \d+ for hello-hostile_1\.0_amd64\.deb, the file has [0-9a-f]{64} \d+$/,
      },
      {
        name: 'no checksums at all',
        edit: (text) => text.replace(/^Checksums-Sha256:\n( .*\n)+/m, 'Checksums-Sha256:\n'),
        reason: /Checksums-Sha256 names no file$/,
      },
      {
        name: 'no Build-Architecture',
        edit: (text) => text.replace(/^Build-Architecture: .*\n/m, ''),
        reason: /has no Build-Architecture field$/,
      },
    ];
    for (const testCase of edits) {
      it(`refuses a .buildinfo with ${testCase.name}`, async () => {
        const staged = await stage();
        const log = staged.manifest.files.find((entry) => entry.name.endsWith('.log'))?.name ?? '';
        const manifest = await rewriteBuildinfo(staged, (text) => testCase.edit(text).replace(' LOG\n', ` ${log}\n`));
        await refusedUnchanged(staged, manifest, new RegExp(`: hello-hostile_1\\.0_amd64\\.buildinfo: ${testCase.reason.source}`));
      });
    }
  });

  describe('packages the job\u2019s source does not build', () => {
    it('refuses a .changes whose Binary names a foreign package', async () => {
      const staged = await stage();
      const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField('Binary', 'hello-hostile coreutils'));
      await refusedUnchanged(
        staged,
        manifest,
        /: hello-hostile_1\.0_amd64\.changes: Binary names coreutils, which hello-hostile does not build \(its \.dsc lists hello-hostile\)$/,
      );
    });

    const renames: { name: string; to: string; reason: RegExp }[] = [
      {
        name: 'a foreign package',
        to: 'coreutils_9.9_amd64.deb',
        reason:
          /coreutils_9\.9_amd64\.deb: is a package of coreutils, which hello-hostile does not build \(its \.dsc lists hello-hostile\) \(listed in hello-hostile_1\.0_amd64\.changes\)$/,
      },
      {
        name: 'the debug symbols of a foreign package',
        to: 'coreutils-dbgsym_1.0_amd64.deb',
        reason: /coreutils-dbgsym_1\.0_amd64\.deb: is a package of coreutils-dbgsym, which hello-hostile does not build/,
      },
      {
        name: 'a foreign installer package (.udeb)',
        to: 'coreutils-udeb_1.0_amd64.udeb',
        reason: /coreutils-udeb_1\.0_amd64\.udeb: is a package of coreutils-udeb, which hello-hostile does not build/,
      },
      {
        name: 'another version of its own package',
        to: 'hello-hostile_9.9_amd64.deb',
        reason: /hello-hostile_9\.9_amd64\.deb: names version 9\.9, the job builds hello-hostile 1\.0 \(listed in/,
      },
      {
        name: 'an architecture the job does not build',
        to: 'hello-hostile_1.0_i386.deb',
        reason: /hello-hostile_1\.0_i386\.deb: names architecture i386; a amd64 job may upload amd64, all \(listed in/,
      },
      {
        name: 'a file named after another source',
        to: 'coreutils_1.0_amd64.tar.gz',
        reason: /coreutils_1\.0_amd64\.tar\.gz: names coreutils, the job builds hello-hostile \(listed in/,
      },
      {
        name: 'a file not named as dpkg names them',
        to: 'hello-hostile.deb',
        reason: /hello-hostile\.deb: is not named <package>_<version>_<architecture>\.<type> \(listed in/,
      },
    ];
    for (const testCase of renames) {
      it(`refuses a .changes whose Files list ${testCase.name}`, async () => {
        const staged = await stage();
        const deb = listedName(staged, '.deb');
        const manifest = await replaceListed(staged, deb, await readFile(join(staged.dir, deb)), testCase.to);
        await refusedUnchanged(staged, manifest, testCase.reason);
      });
    }

    it('refuses a .buildinfo named after another source', async () => {
      const staged = await stage();
      const buildinfo = listedName(staged, '.buildinfo');
      const manifest = await replaceListed(staged, buildinfo, await readFile(join(staged.dir, buildinfo)), 'coreutils_1.0_amd64.buildinfo');
      await refusedUnchanged(staged, manifest, /coreutils_1\.0_amd64\.buildinfo: names coreutils, the job builds hello-hostile/);
    });

    it('refuses a .dsc that is not the one Lighthouse handed out (its SHA-256 differs from the record)', async () => {
      const staged = await stage();
      // The builder writes its own .dsc, one whose Binary would make coreutils this source's package.
      await writeFile(staged.dsc, (await readFile(staged.dsc, 'utf8')).replace(/^Binary: (.*)$/m, 'Binary: $1, coreutils'));
      const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField('Binary', 'hello-hostile coreutils'));
      await refusedUnchanged(
        staged,
        manifest,
        new RegExp(
          `: source/hello-hostile_1\\.0\\.dsc: SHA-256 is ${sha256(await readFile(staged.dsc))}, the job record says ${staged.record.dscSha256 ?? ''}: this is not the \\.dsc Lighthouse handed out$`,
        ),
      );
    });

    it('refuses a .dsc that is a link to one elsewhere', async () => {
      const staged = await stage();
      const elsewhere = join(tmp, `dsc-${staged.manifest.uuid}.dsc`);
      await rename(staged.dsc, elsewhere);
      await symlink(elsewhere, staged.dsc);
      await refusedUnchanged(
        staged,
        staged.manifest,
        /: source\/hello-hostile_1\.0\.dsc: is a symbolic link; only regular files in the workspace are signed$/,
      );
    });

    it('refuses when the builder left no .dsc', async () => {
      const staged = await stage();
      await rm(join(staged.workspace, 'source'), { recursive: true });
      await refusedUnchanged(
        staged,
        staged.manifest,
        /: source\/hello-hostile_1\.0\.dsc: missing from the job workspace: the signer needs the \.dsc to know the binary packages of the source$/,
      );
    });

    it('refuses a job whose record has no .dsc digest (written by an older connector), yet still reads that record', async () => {
      const staged = await stage();
      const old: NewJobRecord = { ...staged.record };
      delete old.dscName;
      delete old.dscSha256;
      records.write(old);
      const refusal = await expectRefused(
        staged.manifest,
        /: job: the job record names no \.dsc and its SHA-256 \(it was written by an older connector\), so the binary packages of the source are unknown; retry the job$/,
      );
      assert.deepEqual([refusal.package, refusal.version], [spec.name, spec.version], 'the old record was read');
    });
  });

  describe('files that are not plain files of the job', () => {
    it('refuses a file the manifest names but neither control file lists', async () => {
      const staged = await stage();
      await writeFile(join(staged.dir, 'extra.deb'), 'not listed anywhere');
      const manifest = { ...staged.manifest, files: [...staged.manifest.files, await entryOf(staged.dir, 'extra.deb')] };
      await refusedUnchanged(staged, manifest, /extra\.deb: is in the manifest but listed in neither the \.changes nor the \.dud$/);
    });

    it('refuses a hard link to a file elsewhere', async () => {
      const staged = await stage();
      const deb = staged.manifest.files.find((entry) => entry.name.endsWith('.deb'))?.name ?? assert.fail('no .deb');
      const elsewhere = join(tmp, `elsewhere-${staged.manifest.uuid}.deb`);
      await rename(join(staged.dir, deb), elsewhere);
      await link(elsewhere, join(staged.dir, deb));
      await refusedUnchanged(staged, staged.manifest, new RegExp(`${deb.replace(/[.+]/g, '\\$&')}: has 2 hard links`));
    });

    it('refuses a FIFO in place of a file, without hanging on it', async () => {
      const staged = await stage();
      const deb = staged.manifest.files.find((entry) => entry.name.endsWith('.deb'))?.name ?? assert.fail('no .deb');
      await rm(join(staged.dir, deb));
      await run('mkfifo', [join(staged.dir, deb)]);
      await refusedUnchanged(staged, staged.manifest, /: is not a regular file$/);
    });

    it('refuses an artifacts dir that is a link to a copy elsewhere', async () => {
      const staged = await stage();
      const elsewhere = join(tmp, `copy-${staged.manifest.uuid}`);
      await rename(staged.dir, elsewhere);
      await symlink(elsewhere, staged.dir);
      await refusedUnchanged(staged, staged.manifest, /artifacts: is not a directory \(a symbolic link or a file\); refusing it$/);
    });

    it('refuses a workspace that is a link to another directory', async () => {
      const staged = await stage();
      const elsewhere = join(tmp, `workspace-${staged.manifest.uuid}`);
      await rename(staged.workspace, elsewhere);
      await symlink(elsewhere, staged.workspace);
      await refusedUnchanged(staged, staged.manifest, /the job workspace: is not a directory \(a symbolic link or a file\); refusing it$/);
    });

    it('refuses a signer-originals planted as a link into the signer\u2019s own directory', async () => {
      const staged = await stage();
      await symlink(join(tmp, 'signer-logs'), join(staged.workspace, 'signer-originals'));
      await refusedUnchanged(staged, staged.manifest, /signer-originals: is not a directory \(a symbolic link or a file\); refusing it$/);
    });
  });

  describe('swaps between check and signature', () => {
    it('refuses when the artifacts dir is swapped for a link after the checks, writing nothing through the link', async () => {
      const staged = await stage();
      const decoy = join(tmp, `decoy-${staged.manifest.uuid}`);
      await mkdir(decoy);
      await writeFile(join(decoy, 'marker'), 'the builder wants the signer to write here');
      const moved = `${staged.dir}.moved`;
      hook = async () => {
        await rename(staged.dir, moved);
        await symlink(decoy, staged.dir);
      };
      try {
        const before = await snapshot(decoy);
        const beforeArtifacts = await snapshot(staged.dir);
        await expectRefused(staged.manifest, /artifacts: was moved to .*\.moved while the signer worked on it; refusing the job$/);
        assert.deepEqual(await snapshot(decoy), before, 'nothing written to where the link points');
        assert.deepEqual(await snapshot(moved), beforeArtifacts, 'the real artifacts are as the builder left them, nothing signed');
      } finally {
        hook = null;
      }
    });

    it('signs the checked bytes and replaces the link when the .changes is swapped for a link after the checks', async () => {
      const staged = await stage();
      const changes = staged.manifest.changes ?? assert.fail('no .changes');
      const victim = join(tmp, `victim-${staged.manifest.uuid}`);
      await writeFile(victim, 'a file the builder wants overwritten or signed\n');
      const checked = await readFile(join(staged.dir, changes), 'utf8');
      hook = async () => {
        await unlink(join(staged.dir, changes));
        await symlink(victim, join(staged.dir, changes));
      };
      try {
        const signed = await expectSigned(staged.manifest);
        assert.equal(await readFile(victim, 'utf8'), 'a file the builder wants overwritten or signed\n', 'the link target is untouched');
        const text = await readFile(join(staged.dir, changes), 'utf8');
        assert.ok(text.includes(checked.split('\nChecksums-Sha1:')[0] ?? ''), 'what was signed is the .changes that was checked');
        await run('gpgv', ['--keyring', keyring, join(staged.dir, changes)]);
        assert.equal(signed.files.find((entry) => entry.name === changes)?.sha256, sha256(Buffer.from(text)));
      } finally {
        hook = null;
      }
    });

    it('never writes through a link when the artifacts dir is swapped back and forth while jobs are signed', async () => {
      const outcomes: string[] = [];
      for (let i = 0; i < 6; i++) {
        const staged = await stage();
        const decoy = join(tmp, `race-decoy-${staged.manifest.uuid}`);
        await mkdir(decoy);
        for (const entry of staged.manifest.files) await copyFile(join(staged.dir, entry.name), join(decoy, entry.name));
        const decoyBefore = await snapshot(decoy);
        const real = `${staged.dir}.real`;
        let racing = true;
        const race = (async () => {
          while (racing) {
            await rename(staged.dir, real);
            await symlink(decoy, staged.dir);
            await sleep(i % 3);
            await unlink(staged.dir);
            await rename(real, staged.dir);
            await sleep(i % 2);
          }
        })();
        const upload = stageJobId(staged.manifest, 'upload');
        const final = reportJobId(staged.manifest, { kind: 'final' });
        let outcome: string;
        try {
          await signJob(staged.manifest);
          outcome = uploadQueue.job(upload)
            ? 'signed'
            : reportQueue.job(final)
              ? 'refused'
              : assert.fail(`neither an upload job nor a final report for ${staged.manifest.uuid}`);
        } finally {
          racing = false;
          await race;
        }
        outcomes.push(outcome);
        assert.deepEqual(await snapshot(decoy), decoyBefore, 'nothing written where the link pointed');
        const events = (await auditLines(staged.manifest.uuid)).map((entry) => entry.event);
        if (outcome === 'signed') {
          assert.deepEqual(events, ['signed', 'signed', 'signed']);
          await run('gpgv', ['--keyring', keyring, join(staged.dir, staged.manifest.changes ?? '')]);
        } else {
          assert.equal(outcome, 'refused');
          assert.deepEqual(events, ['refused']);
          const report = reportQueue.job(final) as { data: ReportPayload };
          assert.match(
            (report.data as { reason: string }).reason,
            /artifacts: (was moved to|is not a directory|is missing|cannot be opened|is at )/,
          );
        }
      }
      assert.equal(outcomes.length, 6);
    });
  });

  describe('the audit log', () => {
    it('is not opened through a link', async () => {
      const dir = join(tmp, 'audit-link');
      await mkdir(dir, { mode: 0o700 });
      const target = join(tmp, 'planted-target.log');
      await writeFile(target, 'the builder reads this\n');
      await symlink(target, join(dir, 'signer.log'));
      await assert.rejects(openAuditLog(join(dir, 'signer.log')), (error: Error) => {
        assert.ok(error instanceof AuditLogError);
        assert.match(error.message, /signer\.log is a symbolic link; refusing to write through it$/);
        return true;
      });
      assert.equal(await readFile(target, 'utf8'), 'the builder reads this\n');
    });

    it('is not opened in a directory a builder could write to or replace', async () => {
      const dir = join(tmp, 'audit-shared');
      await mkdir(dir);
      await chmod(dir, 0o2770);
      await assert.rejects(
        openAuditLog(join(dir, 'signer.log')),
        /is writable by others \(mode 2770\); it must be the signer's alone \(0700\)$/,
      );
      const linked = join(tmp, 'audit-dir-link');
      await symlink(join(tmp, 'signer-logs'), linked);
      await assert.rejects(openAuditLog(join(linked, 'signer.log')), /audit-dir-link is a symbolic link; refusing to write through it$/);
    });

    it('keeps writing to the file it opened when the path is replaced', async () => {
      const dir = join(tmp, 'audit-replace');
      const file = join(dir, 'signer.log');
      const audit = await openAuditLog(file);
      const job = { uuid: randomUUID(), round: R, package: 'p', version: '1', distribution: 's', repository: 'master', uploadTarget: null };
      await audit.append({ event: 'refused', time: 'first', ...job, reason: 'one' });
      await rename(file, `${file}.hidden`);
      await writeFile(file, '');
      await audit.append({ event: 'refused', time: 'second', ...job, reason: 'two' });
      await audit.close();
      assert.equal(await readFile(file, 'utf8'), '', 'the planted file got nothing');
      const lines = (await readFile(`${file}.hidden`, 'utf8')).trim().split('\n');
      assert.deepEqual(
        lines.map((line) => (JSON.parse(line) as RefusalEntry).reason),
        ['one', 'two'],
      );
    });
  });

  describe('honest builds with more than one package', () => {
    const honest: {
      name: string;
      build: 'binary' | 'arch' | 'indep';
      record: Partial<JobRecord>;
      dudArchitecture?: string;
      debs: string[];
    }[] = [
      {
        name: 'arch and indep (--only=binary): an _all.deb and -dbgsym besides the package',
        build: 'binary',
        record: {},
        debs: ['hello-multi-dbgsym_2.0_amd64.deb', 'hello-multi-doc_2.0_all.deb', 'hello-multi_2.0_amd64.deb'],
      },
      {
        name: 'arch only (--only=arch, no do_indep): the package and its -dbgsym',
        build: 'arch',
        record: { doIndep: false },
        debs: ['hello-multi-dbgsym_2.0_amd64.deb', 'hello-multi_2.0_amd64.deb'],
      },
      {
        name: 'an arch-indep job (--only=indep): the _all.deb and an _all.buildinfo',
        build: 'indep',
        record: { architecture: 'all' },
        dudArchitecture: 'all',
        debs: ['hello-multi-doc_2.0_all.deb'],
      },
    ];
    for (const testCase of honest) {
      it(`signs ${testCase.name}, each signature good for gpgv, the .buildinfo text as dpkg wrote it`, async () => {
        const staged = await stage({ build: multi[testCase.build], record: testCase.record, dudArchitecture: testCase.dudArchitecture });
        const buildinfo = listedName(staged, '.buildinfo');
        const written = await readFile(join(staged.dir, buildinfo), 'utf8');
        const signed = await expectSigned(staged.manifest);
        assert.deepEqual(
          signed.files.map((entry) => entry.name).filter((name) => name.endsWith('.deb')),
          testCase.debs,
        );
        for (const name of [signed.changes ?? assert.fail('no .changes'), buildinfo, signed.dud]) {
          const { stderr } = await run('gpgv', ['--keyring', keyring, join(staged.dir, name)]);
          assert.match(stderr, /Good signature from "Spark Worker <worker@example.org>"/, name);
        }
        const text = parseControlFile(await readFile(join(staged.dir, buildinfo), 'utf8')).clearsigned?.text;
        assert.equal(text, written, 'the signed .buildinfo says what dpkg-genbuildinfo wrote');
        const { stdout } = await run('dscverify', ['--no-conf', '--no-default-keyrings', '--keyring', keyring, signed.changes ?? ''], {
          cwd: staged.dir,
        });
        assert.match(stdout, /All files validated successfully\./);
        assert.deepEqual(
          (await auditLines(staged.manifest.uuid)).map((entry) => entry.event),
          ['signed', 'signed', 'signed'],
        );
      });
    }
  });

  it('still signs an honest job after all of that, naming the job in every audit line', async () => {
    const staged = await stage();
    const signed = await expectSigned(staged.manifest);
    for (const name of [signed.changes ?? assert.fail('no .changes'), signed.dud]) {
      const { stderr } = await run('gpgv', ['--keyring', keyring, join(staged.dir, name)]);
      assert.match(stderr, /Good signature from "Spark Worker <worker@example.org>"/);
    }
    const audit = (await auditLines(staged.manifest.uuid)) as SignatureEntry[];
    assert.equal(audit.length, 3);
    for (const entry of audit) {
      assert.equal(entry.event, 'signed');
      assert.deepEqual(
        [entry.package, entry.version, entry.distribution, entry.repository, entry.uploadTarget, entry.round],
        [spec.name, spec.version, 'bookworm', 'master', 'https://archive.example.org/_upload', R],
      );
    }
  });
});
