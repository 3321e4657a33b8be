import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { reportJobId, stageJobId } from '@spark/protocol';
import { waitFor } from '@spark/testing';
import { startHarness, type Harness } from './harness.js';
import { expectedOrder, makeSignedJob, makeSigningKey } from './signed-job.js';

const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

function startUploader(configFile: string): { child: ChildProcess; exited: Promise<number | null>; output: () => string } {
  const child = spawn(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', main, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

describe('spark-uploader killed mid-job', () => {
  let h: Harness;
  let gnupgHome: string;
  const children: ChildProcess[] = [];

  before(async () => {
    [h, gnupgHome] = await Promise.all([startHarness(), makeSigningKey()]);
  });
  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await h.close();
    await rm(gnupgHome, { recursive: true, force: true });
  });

  it(
    'after a restart, does not count the file whose answer it never saw as uploaded, and completes once the operator removes it',
    { timeout: 120_000 },
    async () => {
      const job = await makeSignedJob(gnupgHome, h.config.workspacesDir, h.config.logsDir, { debSize: 4 * 1024 * 1024 });
      h.receiver.options.answerDelayMs = 1_500;
      const first = startUploader(h.configFile);
      children.push(first.child);
      await h.addUpload(job.manifest);
      const stored = async () => (await readdir(join(h.archiveDir, 'master')).catch(() => [])).filter((f) => !f.startsWith('.'));
      await waitFor('the uploader to store 3 files', async () => (await stored()).length >= 3, {
        timeoutMs: 60_000,
        intervalMs: 20,
        detail: () => first.output(),
      });
      // The third file is stored and its answer held back: the uploader dies not knowing it arrived.
      first.child.kill('SIGKILL');
      await first.exited;
      h.receiver.options.answerDelayMs = 0;
      assert.equal(await h.uploads.getJobState(stageJobId(job.manifest, 'upload')), 'active');

      const second = startUploader(h.configFile);
      children.push(second.child);
      // The restarted uploader cannot tell whether the archive got all of the third file: it does not count
      // the 403 as done, and says which file to remove where.
      const third = expectedOrder(job)[2] as string;
      await h.excerptMatching(
        job.uuid,
        new RegExp(`the archive holds a possibly partial ${third.replace(/[.+]/g, '\\$&')}: .* Remove incoming/master/`),
        60_000,
      );
      // The excerpt is queued during the try, just before the job moves to delayed until its next try.
      await waitFor(
        'the upload job delayed until its next try',
        async () => (await h.uploads.getJobState(stageJobId(job.manifest, 'upload'))) === 'delayed',
        {
          timeoutMs: 10_000,
          intervalMs: 20,
        },
      );
      await rm(join(h.archiveDir, 'master', third));
      assert.equal(await h.settled(job.uuid, 90_000), 'completed', second.output());

      for (const [name, data] of job.contents) {
        assert.deepEqual(await readFile(join(h.archiveDir, 'master', name)), data, `${name} differs`);
      }
      const created = h.receiver.requests.filter((r) => r.status === 201).map((r) => r.url.split('/').pop());
      assert.deepEqual(
        created,
        [...expectedOrder(job).slice(0, 3), ...expectedOrder(job).slice(2)],
        'each file created once, in order; the third again after its removal',
      );
      const refused = h.receiver.requests.filter((r) => r.status !== 201).map((r) => [r.url.split('/').pop(), r.status]);
      assert.ok(refused.length >= 2, 'a status excerpt goes out from the second try in a row that fails');
      assert.deepEqual(
        refused,
        refused.map(() => [third, 403]),
        'the restarted uploader re-sent only the file whose answer it never saw',
      );
      assert.match(second.output(), /upload try 2 failed: the archive holds a possibly partial/);
      assert.equal(((await h.reports.getJob(reportJobId(job.manifest, { kind: 'final' })))?.data as { kind: string }).kind, 'success');

      second.child.kill('SIGTERM');
      assert.equal(await second.exited, 0);
    },
  );
});
