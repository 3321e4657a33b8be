import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jobRecordKey, reportJobId, stageJobId } from '@spark/protocol';
import { runSparkCommand, waitFor } from '@spark/testing';
import { startHarness, startUploaderOnRedis, type Harness } from './harness.js';
import { makeSignedJob, makeSigningKey, type SignedJob } from './signed-job.js';

/*
 * `spark retry-upload`, a process of its own, reading and moving the
 * uploader's jobs in Redis, against spark-uploader on BullMQ and a real
 * redis-server, and an archive that keeps partial files as lkwebupload does.
 * The uploader's logic is upload.test.ts's and partial-upload.test.ts's.
 */
describe('spark retry-upload against spark-uploader on BullMQ and Redis', () => {
  let h: Harness;
  let gnupgHome: string;

  before(async () => {
    [h, gnupgHome] = await Promise.all([
      startHarness({ writeInPlace: true, uploaderKeys: ['ConnectTimeout = 2', 'IdleTimeout = 1', 'GiveUpAfter = 4'] }),
      makeSigningKey(),
    ]);
  });
  after(async () => {
    await h.close();
    await rm(gnupgHome, { recursive: true, force: true });
  });

  /** Runs `test` with an uploader on BullMQ (GiveUpAfter `giveUpAfterMs`, default the harness's 4 s), then stops it. */
  const withUploader = async (
    options: { giveUpAfterMs?: number; retryDelayMs?: (tries: number) => number },
    test: () => Promise<void>,
  ): Promise<void> => {
    const { giveUpAfterMs, retryDelayMs = () => 20 } = options;
    const config = giveUpAfterMs === undefined ? h.config : { ...h.config, uploader: { ...h.config.uploader, giveUpAfterMs } };
    const uploader = startUploaderOnRedis(config, h.logger, retryDelayMs);
    await uploader.start();
    try {
      await test();
    } finally {
      await uploader.close();
    }
  };
  const newJob = (debSize?: number) => makeSignedJob(gnupgHome, h.config.workspacesDir, h.config.logsDir, debSize ? { debSize } : {});
  const debOf = (job: SignedJob) => `${job.source}_1.0-1_amd64.deb`;
  const requestsFor = (name: string) => h.receiver.requests.filter((r) => r.url.endsWith(`/${name}`)).map((r) => r.status);
  const finalReport = async (job: SignedJob) =>
    (await h.reports.getJob(reportJobId(job.manifest, { kind: 'final' })))?.data as Record<string, unknown> | undefined;
  const retryUpload = async (uuid: string) => {
    const { code, stdout, stderr } = await runSparkCommand(['retry-upload', uuid, '--config', h.configFile]);
    return { code, text: stdout + stderr };
  };

  it('refuses what is not a job uuid and says when there is no such upload job', async () => {
    const bad = await retryUpload('../../etc');
    assert.equal(bad.code, 64);
    assert.match(bad.text, /^spark retry-upload: expected one job uuid, got "\.\.\/\.\.\/etc"/);
    const uuid = '0b7e4c1a-54f4-4f1c-9d2e-3a3c1f6a9e01';
    const missing = await retryUpload(uuid);
    assert.deepEqual(
      [missing.code, missing.text.trim()],
      [1, `spark retry-upload: job ${uuid} was not handed out to this worker (no record ${jobRecordKey(h.prefix, uuid)})`],
    );
  });

  it('says there is nothing to retry once the upload completed', async () => {
    await withUploader({}, async () => {
      const job = await newJob();
      await h.addUpload(job.manifest);
      assert.equal(await h.settled(job.uuid), 'completed');
      const again = await retryUpload(job.uuid);
      assert.deepEqual(
        [again.code, again.text.trim()],
        [1, `spark retry-upload: the upload of job ${job.uuid} completed already; nothing to retry`],
      );
    });
  });

  it('reports a round failed when BullMQ fails its upload job, and spark retry-upload then says the round has ended', async () => {
    await withUploader({}, async () => {
      const job = await newJob();
      const other = await newJob();
      // The record and queue id of `job`, carrying the manifest of `other`: the uploader refuses it.
      await h.addUpload(job.manifest);
      await h.settled(job.uuid);
      await h.uploads.remove(stageJobId(job.manifest, 'upload'));
      await h.reports.remove(reportJobId(job.manifest, { kind: 'final' }));
      await h.uploads.add('upload', { manifest: other.manifest }, { jobId: stageJobId(job.manifest, 'upload') });
      assert.equal(await h.settled(job.uuid), 'failed');
      const report = await waitFor('the final report', () => finalReport(job), { timeoutMs: 10_000 });
      assert.deepEqual(
        [report?.['kind'], report?.['reason']],
        [
          'failed',
          `the uploader could not finish the job: upload job ${stageJobId(job.manifest, 'upload')} carries the manifest of another job`,
        ],
      );
      const retried = await retryUpload(job.uuid);
      assert.equal(retried.code, 1);
      assert.match(
        retried.text,
        new RegExp(
          `^spark retry-upload: job ${job.uuid} \\(round ${job.manifest.round}\\) was already reported failed to Lighthouse at .*: the uploader could not finish the job: .*\\n` +
            `Lighthouse has ended that round, so its upload cannot be retried\\. To build the job again, have Lighthouse hand it out again \\(lk-admin job retry ${job.uuid}\\)\\.\\n$`,
        ),
      );
      assert.equal(await h.uploads.getJobState(stageJobId(job.manifest, 'upload')), 'failed', 'not re-queued');
    });
  });

  it('says an upload given up at GiveUpAfter cannot be retried: the round has ended and its files are removed', async () => {
    // GiveUpAfter 0: the first failed try gives the upload up, with no time to wait for.
    await withUploader({ giveUpAfterMs: 0 }, async () => {
      const job = await newJob();
      const deb = debOf(job);
      h.receiver.options.failFiles = new Map([[deb, { status: 502, message: 'bad gateway' }]]);
      try {
        await h.addUpload(job.manifest);
        assert.equal(await h.settled(job.uuid, 30_000), 'completed');
      } finally {
        h.receiver.options.failFiles = new Map();
      }
      assert.equal((await finalReport(job))?.['kind'], 'failed');
      const retried = await retryUpload(job.uuid);
      assert.equal(retried.code, 1);
      assert.match(
        retried.text,
        new RegExp(
          `^spark retry-upload: the upload of job ${job.uuid} \\(round ${job.manifest.round}\\) was given up and the job reported failed to Lighthouse at .*: the upload to the archive .*\\n` +
            `Lighthouse has ended that round and its files are removed, so there is nothing to retry\\. To build the job again, have Lighthouse hand it out again \\(lk-admin job retry ${job.uuid}\\)\\.\\n$`,
        ),
      );
    });
  });

  it(
    'cuts a PUT the archive stops reading after IdleTimeout, and once the operator removes the partial file the next try uploads it and the job succeeds',
    { timeout: 60_000 },
    async () => {
      // The second try comes quickly; the third only when spark retry-upload asks for it.
      await withUploader({ giveUpAfterMs: 120_000, retryDelayMs: (tries) => (tries === 1 ? 200 : 100_000) }, async () => {
        const job = await newJob(2 * 1024 * 1024);
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
      });
    },
  );
});
