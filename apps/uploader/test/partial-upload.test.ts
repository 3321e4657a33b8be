import assert from 'node:assert/strict';
import { access, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jobWorkspaceDir, reportJobId } from '@spark/protocol';
import { sendReport } from '@spark/service';
import { runSparkCommand } from '@spark/testing';
import type { Uploader } from '../src/uploader.js';
import { startHarness, startUploaderOnRedis, type Harness } from './harness.js';
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
 */
describe('spark-uploader against an archive that keeps partial files (lkwebupload)', () => {
  let h: Harness;
  let gnupgHome: string;
  const running: Uploader[] = [];

  before(async () => {
    [h, gnupgHome] = await Promise.all([
      startHarness({ writeInPlace: true, uploaderKeys: ['ConnectTimeout = 2', 'IdleTimeout = 1', 'GiveUpAfter = 4'] }),
      makeSigningKey(),
    ]);
  });
  after(async () => {
    for (const uploader of running) await uploader.close();
    await h.close();
    await rm(gnupgHome, { recursive: true, force: true });
  });

  const startUploader = async (giveUpAfterMs?: number, retryDelayMs: (tries: number) => number = () => 200) => {
    const config = giveUpAfterMs === undefined ? h.config : { ...h.config, uploader: { ...h.config.uploader, giveUpAfterMs } };
    const uploader = startUploaderOnRedis(config, h.logger, retryDelayMs);
    running.push(uploader);
    await uploader.start();
    return uploader;
  };
  const newJob = () => makeSignedJob(gnupgHome, h.config.workspacesDir, h.config.logsDir, { debSize: 2 * 1024 * 1024 });
  const debOf = (job: SignedJob) => `${job.source}_1.0-1_amd64.deb`;
  const requestsFor = (name: string) => h.receiver.requests.filter((r) => r.url.endsWith(`/${name}`)).map((r) => r.status);
  const finalReport = async (job: SignedJob) =>
    (await h.reports.getJob(reportJobId(job.manifest, { kind: 'final' })))?.data as Record<string, unknown> | undefined;
  const retryUpload = async (uuid: string) => {
    const { code, stdout, stderr } = await runSparkCommand(['retry-upload', uuid, '--config', h.configFile]);
    return { code, text: stdout + stderr };
  };

  it(
    'never reports success for an upload cut mid-file: the excerpts name the possibly partial file and where to remove it, and by GiveUpAfter the job is reported failed with that reason',
    { timeout: 60_000 },
    async () => {
      const uploader = await startUploader();
      const job = await newJob();
      const deb = debOf(job);
      // The builder's excerpts of this round: the uploader's must come after them.
      for (const seq of [1, 2]) {
        await sendReport(h.reports, { kind: 'status', ...job.manifest, at: Date.now(), logExcerpt: `build log ${seq}` }, seq);
      }
      h.receiver.options.failFiles = new Map([[deb, { cutAfterBytes: 512 * 1024, times: 1 }]]);
      const started = Date.now();
      await h.addUpload(job.manifest);
      assert.equal(await h.settled(job.uuid, 30_000), 'completed');
      assert.ok(Date.now() - started >= 4_000, 'given up before GiveUpAfter');

      const report = await finalReport(job);
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

      const excerpts = await h.statusExcerpts(job.uuid);
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

      assert.equal(await exists(jobWorkspaceDir(h.config.workspacesDir, job.manifest)), false);
      const retried = await retryUpload(job.uuid);
      assert.equal(retried.code, 1);
      assert.match(
        retried.text,
        new RegExp(
          `^spark retry-upload: the upload of job ${job.uuid} \\(round ${job.manifest.round}\\) was given up and the job reported failed to Lighthouse at .*: the upload to the archive .*\\n` +
            `Lighthouse has ended that round and its files are removed, so there is nothing to retry\\. To build the job again, have Lighthouse hand it out again \\(lk-admin job retry ${job.uuid}\\)\\.\\n$`,
        ),
      );
      await uploader.close();
    },
  );

  it(
    'cuts a PUT the archive stops reading after IdleTimeout, and once the operator removes the partial file the next try uploads it and the job succeeds',
    { timeout: 60_000 },
    async () => {
      // The second try comes quickly; the third only when spark retry-upload asks for it.
      await startUploader(120_000, (tries) => (tries === 1 ? 200 : 100_000));
      const job = await newJob();
      const deb = debOf(job);
      h.receiver.options.failFiles = new Map([[deb, { stallAfterBytes: 256 * 1024, times: 1 }]]);
      await h.addUpload(job.manifest);
      await h.excerptMatching(job.uuid, new RegExp(`Remove incoming/master/${deb} on the archive`));
      assert.ok(
        h.logLines.some((line) =>
          new RegExp(
            `/_upload/master/${deb} failed: no progress for 1 s after \\d+ of ${2 * 1024 * 1024} bytes of the file; cut the connection`,
          ).test(line),
        ),
        'the first try was cut for want of progress',
      );
      assert.equal(await finalReport(job), undefined);

      // The operator, on the archive:
      await rm(join(h.archiveDir, 'master', deb));
      const retried = await retryUpload(job.uuid);
      assert.equal(retried.code, 0, retried.text);
      assert.equal(await h.settled(job.uuid, 30_000), 'completed');
      assert.equal((await finalReport(job))?.['kind'], 'success');
      for (const [name, data] of job.contents) {
        assert.deepEqual(await readFile(join(h.archiveDir, 'master', name)), data, `${name} differs in the archive`);
      }
      const statuses = requestsFor(deb);
      // The stalled PUT is recorded only when the receiver drops it; the client cut it long before.
      assert.deepEqual([statuses.includes(403), statuses.at(-1)], [true, 201]);
    },
  );
});
