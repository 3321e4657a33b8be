import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, appendFile, chmod, cp, link, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { jobWorkspaceDir } from '@spark/protocol';
import { startFakeUploadWorld, type FakeUploadWorld } from './fake-upload-world.js';
import { expectedOrder, makeSignedJob, makeSigningKey, type SignedJob } from './signed-job.js';

const run = promisify(execFile);

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/*
 * A builder that changes its workspace after the signer signed it (the
 * builder owns the files; docs/architecture.md, "Trust boundary"), against an
 * archive that keeps partial files as lkwebupload does: the uploader must
 * send no file whole that is not what was signed, no control file of such a
 * round, and report the round failed at once saying which file and why.
 * The uploader's job logic runs on in-memory records and report queue
 * (fake-upload-world.ts): the files, the archive and the HTTP are real.
 */
describe('spark-uploader sends only what the signer signed', () => {
  let h: FakeUploadWorld;
  let gnupgHome: string;
  let secret: string;

  before(async () => {
    [h, gnupgHome] = await Promise.all([startFakeUploadWorld({ writeInPlace: true }), makeSigningKey()]);
    // Stands in for the uploader's Redis password file: readable by the uploader, not by the builder.
    secret = join(h.root, 'uploader.password');
    await writeFile(secret, `${randomBytes(24).toString('hex')}\n`);
    await chmod(secret, 0o400);
  });
  after(async () => {
    await h.close();
    await rm(gnupgHome, { recursive: true, force: true });
  });

  const newJob = (debSize?: number) => makeSignedJob(gnupgHome, h.workspacesDir, h.logsDir, debSize === undefined ? {} : { debSize });
  const debOf = (job: SignedJob) => `${job.source}_1.0-1_amd64.deb`;
  const logOf = (job: SignedJob) => `${job.source}_1.0-1_amd64.${job.uuid}.log`;
  const changesOf = (job: SignedJob) => job.manifest.changes as string;
  const pathOf = (job: SignedJob, name: string) => join(job.artifactsDir, name);
  const archived = async (job: SignedJob) =>
    (await readdir(join(h.archiveDir, 'master')).catch(() => [] as string[])).filter((name) => name.includes(job.source));
  const nothingSent = 'Nothing of this round was sent to the archive.';
  const leftover = (names: string[]) =>
    `The archive holds in incoming/master/ what this round sent: ${names.join(', ')}; no .changes or .dud of it was sent, so it imports none of them. ` +
    'Remove them from incoming/master/ on the archive before the job is built again: the archive refuses a file name it holds.';

  /**
   * Uploads the job and checks the round ends reported failed with exactly `reason` (after the common
   * prefix), that the archive holds no control file of it and no complete file that differs from the
   * signed one (a partial one is shorter), that the secret is nowhere in it, and that the workspace is gone.
   */
  const assertRefused = async (job: SignedJob, reason: string) => {
    assert.equal((await h.upload(job.manifest)).result, 'gave-up');
    const report = h.finalReport(job.manifest) as Record<string, unknown> | undefined;
    assert.equal(report?.['kind'], 'failed');
    assert.equal(report?.['reason'], `the job's files are not what the signer signed: ${reason}`);
    const secretBytes = await readFile(secret);
    for (const name of await archived(job)) {
      assert.ok(!name.endsWith('.changes') && !name.endsWith('.dud'), `the archive holds the control file ${name}`);
      const held = await readFile(join(h.archiveDir, 'master', name));
      const signed = job.contents.get(name) as Buffer;
      assert.ok(held.equals(signed) || held.length < signed.length, `the archive holds a complete ${name} that is not the signed one`);
      assert.equal(held.indexOf(secretBytes), -1, `${name} in the archive holds the secret`);
    }
    assert.equal(await exists(jobWorkspaceDir(h.workspacesDir, job.manifest)), false, 'the workspace is removed');
    return report;
  };

  it('.deb bytes changed after signing, same size: sent up to its held-back last chunk, nothing after it, the round failed naming both SHA-256', async () => {
    const size = 3 * 1024 * 1024 + 1000;
    const job = await newJob(size);
    const deb = debOf(job);
    const changed = Buffer.from(job.contents.get(deb) as Buffer);
    changed[size - 1] = (changed[size - 1] as number) ^ 0xff;
    // Written in place, as a build script holding the file open would.
    await writeFile(pathOf(job, deb), changed);
    const before = expectedOrder(job).slice(0, expectedOrder(job).indexOf(deb));
    await assertRefused(
      job,
      `${deb}: SHA-256 is ${sha256(changed)}, the signed ${changesOf(job)} says ${job.manifest.files.find((f) => f.name === deb)?.sha256}. ` +
        leftover([...before, `${deb} (possibly partial: its PUT was cut off)`]),
    );
    const held = await readFile(join(h.archiveDir, 'master', deb));
    // The held-back last chunk never went out. How much of what was sent before it the receiver kept is
    // TCP's: the uploader cuts the connection, and bytes still in flight may be dropped with it.
    assert.ok(held.length <= 3 * 1024 * 1024, `the archive holds ${held.length} bytes: more than was sent before the held-back last chunk`);
    assert.ok(held.equals(changed.subarray(0, held.length)));
    assert.deepEqual((await archived(job)).sort(), [...before, deb].sort());
  });

  it("a .dud's file (the log) changed after signing: the .changes' files are in, but not the .changes, and nothing of the log", async () => {
    const job = await newJob();
    const log = logOf(job);
    const original = job.contents.get(log) as Buffer;
    const changed = Buffer.from(original.toString().replace('build log', 'fake! log'));
    assert.equal(changed.length, original.length);
    await writeFile(pathOf(job, log), changed);
    const before = expectedOrder(job).slice(0, expectedOrder(job).indexOf(log));
    assert.deepEqual(before.length, 5);
    await assertRefused(
      job,
      `${log}: SHA-256 is ${sha256(changed)}, the signed ${job.manifest.dud} says ${sha256(original)}. ${leftover(before)}`,
    );
    assert.deepEqual((await archived(job)).sort(), [...before].sort());
  });

  it('a .deb that grew after signing: refused before anything is sent', async () => {
    const job = await newJob();
    const deb = debOf(job);
    await appendFile(pathOf(job, deb), 'more');
    const size = (job.contents.get(deb) as Buffer).length;
    await assertRefused(job, `${deb}: is ${size + 4} bytes, the signed ${changesOf(job)} says ${size}. ${nothingSent}`);
    assert.deepEqual(await archived(job), []);
  });

  it("a .deb replaced by a symbolic link to the uploader's password file: refused, the password read by nobody", async () => {
    const job = await newJob();
    const deb = debOf(job);
    await rm(pathOf(job, deb));
    await symlink(secret, pathOf(job, deb));
    await assertRefused(job, `${deb}: is a symbolic link; only the file that was signed is uploaded. ${nothingSent}`);
    assert.deepEqual(await archived(job), []);
  });

  it('a .deb replaced by a hard link to a file elsewhere, with the signed bytes: refused for its second link', async () => {
    const job = await newJob();
    const deb = debOf(job);
    const elsewhere = join(h.root, `${deb}.elsewhere`);
    await writeFile(elsewhere, job.contents.get(deb) as Buffer);
    await rm(pathOf(job, deb));
    await link(elsewhere, pathOf(job, deb));
    await assertRefused(job, `${deb}: has 2 hard links; only the file that was signed is uploaded. ${nothingSent}`);
    assert.deepEqual(await archived(job), []);
  });

  it('a .deb replaced by a FIFO: refused at once, no read waits on it', async () => {
    const job = await newJob();
    const deb = debOf(job);
    await rm(pathOf(job, deb));
    await run('mkfifo', [pathOf(job, deb)]);
    await assertRefused(job, `${deb}: is a FIFO, not a regular file; only the file that was signed is uploaded. ${nothingSent}`);
    assert.deepEqual(await archived(job), []);
  });

  it('a .changes swapped for one with other bytes of the same size: refused before anything is sent', async () => {
    const job = await newJob();
    const changes = changesOf(job);
    const signed = job.contents.get(changes) as Buffer;
    const swapped = Buffer.from(signed.toString().replace('Urgency: medium', 'Urgency: higher'));
    assert.equal(swapped.length, signed.length);
    assert.notDeepEqual(swapped, signed);
    await writeFile(pathOf(job, changes), swapped);
    await assertRefused(job, `${changes}: SHA-256 is ${sha256(swapped)}, the signer's manifest says ${sha256(signed)}. ${nothingSent}`);
    assert.deepEqual(await archived(job), []);
  });

  it('an artifacts dir swapped for a link to a copy of it: refused, nothing read through the link', async () => {
    const job = await newJob();
    const copy = join(h.root, `artifacts-${job.uuid}`);
    await cp(job.artifactsDir, copy, { recursive: true });
    await rename(job.artifactsDir, `${job.artifactsDir}.moved`);
    await symlink(copy, job.artifactsDir);
    await assertRefused(job, `the job's artifacts dir is not a directory (a symbolic link or a file). ${nothingSent}`);
    assert.deepEqual(await archived(job), []);
  });

  it('after all of these, an honest job is uploaded whole, byte-identical, in order, and reported a success', async () => {
    const job = await newJob(3 * 1024 * 1024 + 1000);
    assert.deepEqual(await h.upload(job.manifest), { result: 'uploaded', report: 'success' });
    assert.deepEqual(
      h.receiver.requests.filter((r) => r.url.includes(job.source)).map((r) => [r.url, r.status]),
      expectedOrder(job).map((name) => [`/_upload/master/${name}`, 201]),
    );
    for (const [name, data] of job.contents) assert.deepEqual(await readFile(join(h.archiveDir, 'master', name)), data, name);
    const report = h.finalReport(job.manifest) as Record<string, unknown> | undefined;
    assert.equal(report?.['kind'], 'success');
    assert.equal(report?.['at'], h.clock.now(), 'the report has the uploader clock’s time');
  });
});
