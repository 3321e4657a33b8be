import assert from 'node:assert/strict';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jobLogFile, jobWorkspaceDir, reportJobId, stageJobId } from '@spark/protocol';
import { startFakeUploadWorld, type FakeUploadWorld } from './fake-upload-world.js';
import { expectedOrder, makeSignedJob, makeSigningKey, type SignedJob } from './signed-job.js';

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/*
 * The uploader service (createUploader) on in-memory queues and records
 * (fake-upload-world.ts), its clock moved to each next try's time: the files,
 * the archive and the HTTP are real. What `spark retry-upload` says of the
 * queues in Redis is retry-upload.test.ts's.
 */
describe('spark-uploader', () => {
  let h: FakeUploadWorld;
  let gnupgHome: string;

  before(async () => {
    [h, gnupgHome] = await Promise.all([startFakeUploadWorld(), makeSigningKey()]);
    await h.startUploader();
  });
  after(async () => {
    await h.close();
    await rm(gnupgHome, { recursive: true, force: true });
  });

  const newJob = (options: Parameters<typeof makeSignedJob>[3] = {}) => makeSignedJob(gnupgHome, h.workspacesDir, h.logsDir, options);
  const urlsOf = (job: SignedJob) => h.receiver.requests.filter((r) => r.url.includes(job.source));
  const assertArchived = async (job: SignedJob, repo = 'master') => {
    for (const [name, data] of job.contents) {
      assert.deepEqual(await readFile(join(h.archiveDir, repo, name)), data, `${name} differs in the archive`);
    }
  };
  const finalReport = (job: SignedJob) =>
    h.reports.job(reportJobId(job.manifest, { kind: 'final' }))?.data as Record<string, unknown> | undefined;

  it("uploads a signed job's files in dput-ng order to <fqdn path>/<repo>/, byte-identical, reports success, removes the workspace and keeps the log", async () => {
    const job = await newJob();
    await h.addUpload(job.manifest);
    assert.equal(await h.settled(job.uuid), 'completed');
    const requests = urlsOf(job);
    assert.deepEqual(
      requests.map((r) => [r.url, r.status]),
      expectedOrder(job).map((name) => [`/_upload/master/${name}`, 201]),
    );
    await assertArchived(job);
    assert.deepEqual(finalReport(job), {
      kind: 'success',
      uuid: job.uuid,
      round: job.manifest.round,
      at: finalReport(job)?.['at'],
    });
    assert.equal(finalReport(job)?.['at'], h.clock.now(), 'the report has the uploader clock’s time');
    assert.equal(await exists(jobWorkspaceDir(h.workspacesDir, job.manifest)), false);
    assert.equal(await exists(jobLogFile(h.logsDir, job.manifest)), true);
  });

  it('ends with every file exactly once when the archive fails half the PUTs with 503', async () => {
    const job = await newJob();
    h.receiver.options.failFraction = 0.5;
    try {
      await h.addUpload(job.manifest);
      assert.equal(await h.settled(job.uuid), 'completed');
    } finally {
      h.receiver.options.failFraction = 0;
    }
    const requests = urlsOf(job);
    assert.ok(requests.filter((r) => r.status === 503).length >= expectedOrder(job).length / 2 - 1);
    const created = requests.filter((r) => r.status === 201).map((r) => r.url.split('/').pop());
    assert.deepEqual(created, expectedOrder(job));
    await assertArchived(job);
    assert.equal(finalReport(job)?.['kind'], 'success');
  });

  it("keeps retrying a 422 with the archive's words in its status excerpts, keeps its files, and completes once the archive accepts", async () => {
    const job = await newJob({ repo: 'extra' });
    h.records.targets = { master: h.target, extra: h.target };
    await h.addUpload(job.manifest);
    const excerpt = await h.excerptMatching(job.uuid, /422/);
    assert.match(
      excerpt,
      new RegExp(
        `^spark-uploader: uploading this job's results to repository extra is failing \\(try \\d+, failing since .* UTC\\):\\n` +
          `the archive answered PUT http://127\\.0\\.0\\.1:\\d+/_upload/extra/${job.source}_1\\.0-1\\.dsc with 422 unknown repository: extra\\n` +
          `Next try at .* UTC; if the upload still fails at .* UTC, the job is reported failed\\.\\n$`,
      ),
    );
    assert.equal(await exists(job.artifactsDir), true);
    assert.equal(finalReport(job), undefined);
    assert.ok(urlsOf(job).every((r) => r.status === 422 && r.url.endsWith('.dsc')));

    h.receiver.options.repos = ['master', 'extra'];
    assert.equal(await h.settled(job.uuid), 'completed');
    await assertArchived(job, 'extra');
    assert.equal(finalReport(job)?.['kind'], 'success');
  });

  it('stops retrying a round once Lighthouse has handed the job out again: uploads nothing more, reports nothing, removes its workspace', async () => {
    const job = await newJob({ repo: 'stale' });
    h.records.targets = { master: h.target, stale: h.target };
    await h.addUpload(job.manifest);
    await h.excerptMatching(job.uuid, /422 unknown repository: stale/);
    const next = String(Number(job.manifest.round) + 1);
    const record = (await h.records.read(job.uuid)) ?? assert.fail('no job record');
    h.records.write({ ...record, round: next });
    assert.equal(await h.settled(job.uuid), 'completed');
    const upload = h.uploads.job(stageJobId(job.manifest, 'upload'));
    assert.deepEqual({ ...(upload?.returnvalue as Record<string, unknown>), at: 0 }, { result: 'superseded', by: next, at: 0 });
    assert.equal(finalReport(job), undefined);
    assert.equal(await exists(job.artifactsDir), false);
    const tries = urlsOf(job).length;
    const repos = h.receiver.options.repos;
    h.receiver.options.repos = [...repos, 'stale'];
    h.clock.time += 3600_000;
    assert.equal(h.uploads.promoteDue(h.clock), 0, 'no try is left to come, however long one waits');
    assert.equal(urlsOf(job).length, tries, 'no PUT after the round was superseded');
    h.receiver.options.repos = repos;
    h.records.targets = { master: h.target, extra: h.target };
  });

  it('retries a 502 until the archive recovers, saying so, and sends no file twice', async () => {
    const job = await newJob();
    const deb = `${job.source}_1.0-1_amd64.deb`;
    h.receiver.options.failFiles = new Map([[deb, { status: 502, message: 'bad gateway' }]]);
    await h.addUpload(job.manifest);
    assert.match(await h.excerptMatching(job.uuid, /502/), new RegExp(`/_upload/master/${deb} with 502 bad gateway\\n`));
    const state = h.uploads.job(stageJobId(job.manifest, 'upload'))?.progress as Record<string, unknown>;
    assert.equal(typeof state['tries'], 'number');

    h.receiver.options.failFiles = new Map();
    assert.equal(await h.settled(job.uuid), 'completed');
    const created = urlsOf(job)
      .filter((r) => r.status === 201)
      .map((r) => r.url.split('/').pop());
    assert.deepEqual(created, expectedOrder(job));
    assert.ok(urlsOf(job).filter((r) => r.status === 502).length >= 1);
    assert.equal(urlsOf(job).filter((r) => r.status === 403).length, 0);
    await assertArchived(job);
  });

  it('does not count a file another round left in the archive as uploaded, says so on every try, and sends its own once that file is gone', async () => {
    const job = await newJob();
    const dsc = `${job.source}_1.0-1.dsc`;
    await mkdir(join(h.archiveDir, 'master'), { recursive: true });
    await writeFile(join(h.archiveDir, 'master', dsc), "an earlier round's .dsc\n");
    await h.addUpload(job.manifest);
    const said = await h.excerptMatching(job.uuid, /never sent/);
    assert.match(
      said,
      new RegExp(
        `\\(try 2, .*\\):\\nthe archive already holds ${dsc.replace(/\./g, '\\.')} \\(incoming/master/${dsc.replace(/\./g, '\\.')}\\), which this round of the job never sent: ` +
          `an earlier round or another upload left it there \\(403 file .* already exists in master\\)\\. It is not counted as this round's; ` +
          `the next try succeeds once the archive has imported it or incoming/master/.* is removed on the archive\\n`,
      ),
    );
    // The archive imports the other round's upload.
    await rm(join(h.archiveDir, 'master', dsc));
    assert.equal(await h.settled(job.uuid), 'completed');
    await assertArchived(job);
    assert.equal(finalReport(job)?.['kind'], 'success');
    const excerpts = h.statusExcerpts(job.uuid);
    assert.ok(!excerpts.some((e) => e.text.includes('possibly partial')), 'a file it never sent is never called partial');
  });

  it("reports failed for an FTBFS after uploading only the .dud's files and the .dud", async () => {
    const job = await newJob({ result: 'failure' });
    await h.addUpload(job.manifest);
    assert.equal(await h.settled(job.uuid), 'completed');
    assert.deepEqual(
      urlsOf(job).map((r) => r.url.split('/').pop()),
      expectedOrder(job),
    );
    assert.equal(expectedOrder(job).length, 3);
    const report = finalReport(job);
    assert.equal(report?.['kind'], 'failed');
    assert.match(String(report?.['reason']), /X-Spark-Result: failure/);
  });

  it('reports failed naming depwait for a build waiting on dependencies', async () => {
    const job = await newJob({ result: 'depwait' });
    await h.addUpload(job.manifest);
    assert.equal(await h.settled(job.uuid), 'completed');
    assert.match(String(finalReport(job)?.['reason']), /depwait/);
  });

  it('uploads nothing of a job whose .changes lists a path, and reports it failed at once saying so', async () => {
    const job = await newJob({ extraChangesNames: ['../../etc/passwd'] });
    await h.addUpload(job.manifest);
    assert.equal(await h.settled(job.uuid), 'completed');
    const report = finalReport(job);
    assert.deepEqual(
      [report?.['kind'], report?.['reason']],
      [
        'failed',
        `the uploader cannot upload the job's files: ${job.source}_1.0-1_amd64.changes lists "../../etc/passwd", which is not a plain file name`,
      ],
    );
    assert.equal(urlsOf(job).length, 0);
    assert.equal(await exists(jobWorkspaceDir(h.workspacesDir, job.manifest)), false);
  });

  it('keeps retrying a job whose repository has no upload target, saying so, and uploads it once Lighthouse names one', async () => {
    const job = await newJob({ repo: 'nowhere' });
    await h.addUpload(job.manifest);
    assert.match(
      await h.excerptMatching(job.uuid, /no upload target/),
      /\nLighthouse names no upload target for repository nowhere \(known: master, extra\)\n/,
    );
    assert.equal(await exists(job.artifactsDir), true);
    h.receiver.options.repos = ['master', 'extra', 'nowhere'];
    h.records.targets = { master: h.target, extra: h.target, nowhere: h.target };
    assert.equal(await h.settled(job.uuid), 'completed');
    await assertArchived(job, 'nowhere');
    assert.equal(finalReport(job)?.['kind'], 'success');
  });

  it('fails a job whose payload is not a manifest, naming the problem', async () => {
    await h.uploads.add('upload', { manifest: { uuid: '../../etc' } }, { jobId: 'bogus' });
    const failed = await h.uploads.settled('bogus');
    assert.equal(failed.state, 'failed');
    assert.match(failed.failedReason ?? '', /^invalid upload payload: manifest\.uuid: "\.\.\/\.\.\/etc" is not a valid UUID/);
  });
});
