import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startChain, type Chain } from '../src/chain/chain.js';

const run = promisify(execFile);

describe('the whole chain (host runner)', () => {
  let chain: Chain;
  const logs: string[] = [];
  before(async () => {
    chain = await startChain({ onLog: (service, line) => logs.push(`${service}: ${line}`) });
  });
  after(() => chain.close());

  it('fetches, builds, signs and uploads two jobs, and Lighthouse hears accepted then success for each', async () => {
    const jobs = [await chain.archive.packageJob({ name: 'hello-one', version: '1.0' }), await chain.archive.packageJob({ name: 'hello-two', version: '2.0' })];
    for (const job of jobs) chain.standIn.addJob(job);
    chain.start();
    try {
      await chain.standIn.waitFor((requests) => jobs.every((job) => requests.some((r) => r['request'] === 'job-success' && r['uuid'] === job.uuid)), 120_000);
    } catch (error) {
      assert.fail(`${(error as Error).message}\n${logs.slice(-40).join('\n')}`);
    }
    for (const job of jobs) {
      const sequence = chain.standIn.requests.filter((r) => r['uuid'] === job.uuid && r['request'] !== 'job-status').map((r) => r['request']);
      assert.deepEqual(sequence, ['job-accepted', 'job-success'], `reports of ${job.uuid}`);
      assert.equal(chain.standIn.board.get(job.uuid)?.status, 'DONE');
    }
    const uploaded = (await readdir(join(chain.uploadsDir, 'master'))).sort();
    for (const name of ['hello-one_1.0_amd64.changes', 'hello-one_1.0_amd64.deb', 'hello-one_1.0_amd64.buildinfo', 'hello-two_2.0_amd64.changes']) {
      assert.ok(uploaded.includes(name), `${name} not uploaded; got ${uploaded.join(' ')}`);
    }
    assert.equal(uploaded.filter((name) => name.endsWith('.dud')).length, 2);
    for (const file of uploaded.filter((name) => /\.(changes|dud|buildinfo)$/.test(name))) {
      await run('gpgv', ['--keyring', chain.key.keyring, join(chain.uploadsDir, 'master', file)]);
    }
    for (const job of jobs) assert.equal(existsSync(join(chain.config.workspacesDir, job.uuid)), false, 'workspace removed');
  });
});
