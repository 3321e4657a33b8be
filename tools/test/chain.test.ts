import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { runSparkCli } from '@spark/cli';
import { freePort } from '@spark/testing';
import { startChain, type Chain, type ServiceName } from '../src/chain/chain.js';

const run = promisify(execFile);

describe('the whole chain (host runner)', () => {
  let chain: Chain;
  const logs: string[] = [];
  const ports: Record<ServiceName, number> = { connector: 0, builder: 0, signer: 0, uploader: 0 };
  before(async () => {
    for (const name of Object.keys(ports) as ServiceName[]) ports[name] = await freePort();
    chain = await startChain({ metricsPorts: ports, onLog: (service, line) => logs.push(`${service}: ${line}`) });
  });
  after(() => chain.close());

  it('fetches, builds, signs and uploads two jobs, and Lighthouse hears accepted then success for each', async () => {
    const jobs = [
      await chain.archive.packageJob({ name: 'hello-one', version: '1.0' }),
      await chain.archive.packageJob({ name: 'hello-two', version: '2.0' }),
    ];
    for (const job of jobs) chain.standIn.addJob(job);
    chain.start();
    try {
      await chain.standIn.waitFor(
        (requests) => jobs.every((job) => requests.some((r) => r['request'] === 'job-success' && r['uuid'] === job.uuid)),
        120_000,
      );
    } catch (error) {
      assert.fail(`${(error as Error).message}\n${logs.slice(-40).join('\n')}`);
    }
    for (const job of jobs) {
      const sequence = chain.standIn.requests
        .filter((r) => r['uuid'] === job.uuid && r['request'] !== 'job-status')
        .map((r) => r['request']);
      assert.deepEqual(sequence, ['job-accepted', 'job-success'], `reports of ${job.uuid}`);
      assert.equal(chain.standIn.board.get(job.uuid)?.status, 'DONE');
    }
    const uploaded = (await readdir(join(chain.uploadsDir, 'master'))).sort();
    for (const name of [
      'hello-one_1.0_amd64.changes',
      'hello-one_1.0_amd64.deb',
      'hello-one_1.0_amd64.buildinfo',
      'hello-two_2.0_amd64.changes',
    ]) {
      assert.ok(uploaded.includes(name), `${name} not uploaded; got ${uploaded.join(' ')}`);
    }
    assert.equal(uploaded.filter((name) => name.endsWith('.dud')).length, 2);
    for (const file of uploaded.filter((name) => /\.(changes|dud|buildinfo)$/.test(name))) {
      await run('gpgv', ['--keyring', chain.key.keyring, join(chain.uploadsDir, 'master', file)]);
    }
    for (const job of jobs) assert.equal(existsSync(join(chain.config.workspacesDir, job.uuid)), false, 'workspace removed');
  });

  it('serves Prometheus metrics from each service, with the figures of the jobs just run', async () => {
    const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/;
    const expected: Record<ServiceName, RegExp> = {
      connector: /^spark_lighthouse_roundtrip_seconds_count\{[^}]*request="job"[^}]*\} [1-9]/m,
      builder: /^spark_jobs_total\{[^}]*stage="build"[^}]*\} 2$/m,
      signer: /^spark_jobs_total\{[^}]*stage="sign"[^}]*\} 2$/m,
      uploader: /^spark_upload_bytes_total\{service="uploader"\} [1-9]/m,
    };
    for (const name of Object.keys(ports) as ServiceName[]) {
      const response = await fetch(`http://127.0.0.1:${ports[name]}/metrics`);
      assert.equal(response.status, 200, name);
      const text = await response.text();
      for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
        assert.match(line, sample, `${name}: not a Prometheus sample line`);
      }
      assert.match(text, expected[name], `${name} metrics`);
      assert.match(text, new RegExp(`^spark_process_resident_memory_bytes\\{service="${name}"\\} \\d+$`, 'm'));
    }
    const connector = await (await fetch(`http://127.0.0.1:${ports.connector}/metrics`)).text();
    assert.match(connector, /^spark_queue_jobs\{queue="build",state="waiting",service="connector"\} 0$/m);
  });
});

describe('the whole chain with one Redis user per service (spark redis-acl)', () => {
  let chain: Chain;
  const logs: string[] = [];
  before(async () => {
    chain = await startChain({ redisAcl: true, onLog: (service, line) => logs.push(`${service}: ${line}`) });
  });
  after(() => chain.close());

  it('builds, signs and uploads a job with each service logged in as itself, and Redis refuses none of their commands', async () => {
    const job = await chain.archive.packageJob({ name: 'hello-acl', version: '1.0' });
    chain.standIn.addJob(job);
    chain.start();
    try {
      await chain.standIn.waitFor((requests) => requests.some((r) => r['request'] === 'job-success' && r['uuid'] === job.uuid), 120_000);
    } catch (error) {
      assert.fail(`${(error as Error).message}\n${logs.slice(-40).join('\n')}`);
    }
    const uploaded = await readdir(join(chain.uploadsDir, 'master'));
    assert.ok(uploaded.includes('hello-acl_1.0_amd64.changes'), uploaded.join(' '));
    await run('gpgv', ['--keyring', chain.key.keyring, join(chain.uploadsDir, 'master', 'hello-acl_1.0_amd64.changes')]);
    assert.deepEqual(
      logs.filter((line) => /NOPERM|NOAUTH|WRONGPASS/.test(line)),
      [],
    );
    // `spark status` as the operator, as an operator on the host runs it.
    let status = '';
    const code = await runSparkCli(['status', '--config', chain.configFile], {
      stdout: new Writable({ write: (chunk: Buffer, _encoding, done) => void ((status += chunk.toString()), done()) }),
      stderr: process.stderr,
    });
    assert.equal(code, 0, status);
    assert.match(status, /builder/);
    // Redis logs every command, key and channel an ACL refused, also those a service caught and
    // never logged: none may be there, so every key the services use is one their rules name.
    assert.deepEqual(await chain.refusedByRedis(), []);
  });
});
