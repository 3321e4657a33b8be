import assert from 'node:assert/strict';
import { access, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jobWorkspaceDir, reportJobId } from '@spark/protocol';
import { sendReport } from '@spark/service';
import { startFakeUploadWorld, type FakeUploadWorld } from './fake-upload-world.js';
import { makeSignedJob, makeSigningKey, type SignedJob } from './signed-job.js';

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/*
 * The archive as Laniakea's lkwebupload behaves: each PUT is written straight
 * into incoming/<repo>/<name>, an interrupted PUT leaves a partial file there,
 * and every later PUT of that name answers 403 until someone removes it.
 * The uploader service runs on in-memory queues and records, its clock moved
 * to each next try's time (fake-upload-world.ts); what `spark retry-upload`
 * says of such a job, and a PUT cut after IdleTimeout, are retry-upload.test.ts's.
 */
describe('spark-uploader against an archive that keeps partial files (lkwebupload)', () => {
  let h: FakeUploadWorld;
  let gnupgHome: string;

  before(async () => {
    [h, gnupgHome] = await Promise.all([startFakeUploadWorld({ writeInPlace: true }), makeSigningKey()]);
  });
  after(async () => {
    await h.close();
    await rm(gnupgHome, { recursive: true, force: true });
  });

  const newJob = () => makeSignedJob(gnupgHome, h.workspacesDir, h.logsDir, { debSize: 2 * 1024 * 1024 });
  const debOf = (job: SignedJob) => `${job.source}_1.0-1_amd64.deb`;
  const requestsFor = (name: string) => h.receiver.requests.filter((r) => r.url.endsWith(`/${name}`)).map((r) => r.status);
  const finalReport = (job: SignedJob) =>
    h.reports.job(reportJobId(job.manifest, { kind: 'final' }))?.data as Record<string, unknown> | undefined;

  it('never reports success for an upload cut mid-file: the excerpts name the possibly partial file and where to remove it, and by GiveUpAfter the job is reported failed with that reason', async () => {
    await h.startUploader({ settings: { connectTimeoutMs: 2_000, idleTimeoutMs: 1_000, giveUpAfterMs: 4_000 }, retryDelayMs: () => 200 });
    const job = await newJob();
    const deb = debOf(job);
    // The builder's excerpts of this round: the uploader's must come after them.
    for (const seq of [1, 2]) {
      await sendReport(h.reports, { kind: 'status', ...job.manifest, at: h.clock.now(), logExcerpt: `build log ${seq}` }, seq);
    }
    h.receiver.options.failFiles = new Map([[deb, { cutAfterBytes: 512 * 1024, times: 1 }]]);
    const started = h.clock.now();
    await h.addUpload(job.manifest);
    assert.equal(await h.settled(job.uuid), 'completed');
    assert.ok(h.clock.now() - started >= 4_000, 'given up before GiveUpAfter');

    const report = finalReport(job);
    assert.equal(report?.['kind'], 'failed');
    assert.match(
      String(report?.['reason']),
      new RegExp(
        `^the upload to the archive \\(repository master\\) still failed after \\d+ tries over \\d+ s \\(GiveUpAfter 4 s\\); ` +
          `last problem: the archive holds a possibly partial ${deb}: an earlier try of this job was cut off while sending it, ` +
          `and the archive now refuses it \\(403 file ${deb} already exists in master\\)\\. ` +
          `Remove incoming/master/${deb} on the archive; the next try then sends it again$`,
      ),
    );
    const partial = await stat(join(h.archiveDir, 'master', deb));
    assert.ok(partial.size < 2 * 1024 * 1024, 'the archive holds a partial file');
    const statuses = requestsFor(deb);
    assert.equal(statuses[0], 0, 'the first PUT was cut');
    assert.ok(statuses.length >= 3 && statuses.slice(1).every((s) => s === 403), statuses.join(' '));
    assert.deepEqual(requestsFor(job.manifest.changes ?? ''), [], 'nothing after the cut file was sent');

    const excerpts = h.statusExcerpts(job.uuid);
    assert.deepEqual(
      excerpts.slice(0, 2).map((e) => e.text),
      ['build log 1', 'build log 2'],
    );
    assert.deepEqual(
      excerpts.map((e) => e.seq),
      excerpts.map((_, i) => i + 1),
      'numbered on after the builder, without gaps',
    );
    // The cut itself is only in the log: one failed try that the next may mend is no news for Lighthouse.
    assert.ok(
      h.logLines.some((line) =>
        new RegExp(`upload try 1 failed: PUT http://127\\.0\\.0\\.1:\\d+/_upload/master/${deb} failed: `).test(line),
      ),
    );
    const refused = excerpts[2]?.text;
    assert.match(
      refused ?? '',
      new RegExp(
        `\\(try 2, failing since .*\\):\\nthe archive holds a possibly partial ${deb}: .* Remove incoming/master/${deb} on the archive`,
      ),
    );
    assert.match(
      refused ?? '',
      /\nNext try at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; if the upload still fails at .* UTC, the job is reported failed\.\n$/,
    );

    // Lighthouse's job-failed carries no reason: the excerpt just before it does.
    assert.equal(
      excerpts.at(-1)?.text,
      `spark-uploader: gave up uploading this job's results; reporting it failed:\n${String(report?.['reason'])}\n`,
    );

    assert.equal(await exists(jobWorkspaceDir(h.workspacesDir, job.manifest)), false);
  });
});
