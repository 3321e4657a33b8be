import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startUploadReceiver, type UploadReceiver } from '@spark/testing';
import { startHarness, type Harness } from './harness.js';
import { expectedOrder, makeSignedJob, makeSigningKey } from './signed-job.js';

const run = promisify(execFile);
const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

describe('spark-uploader over https', () => {
  let h: Harness;
  let gnupgHome: string;
  let receiver: UploadReceiver;
  let certFile: string;

  before(async () => {
    [h, gnupgHome] = await Promise.all([startHarness(), makeSigningKey()]);
    const keyFile = join(h.root, 'receiver.key');
    certFile = join(h.root, 'receiver.pem');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    await mkdir(join(h.root, 'tls-archive'));
    receiver = await startUploadReceiver({
      dir: join(h.root, 'tls-archive'),
      repos: ['master'],
      pathPrefix: '/_upload',
      tls: { key: await readFile(keyFile), cert: await readFile(certFile) },
    });
  });
  after(async () => {
    await receiver.close();
    await h.close();
    await rm(gnupgHome, { recursive: true, force: true });
  });

  it('uploads to an https target, trusting the CA the host trusts', { timeout: 60_000 }, async () => {
    await h.setTargets({ master: { upload_fqdn: `127.0.0.1:${receiver.port}/_upload`, upload_method: 'https' } });
    const job = await makeSignedJob(gnupgHome, h.config.workspacesDir, h.config.logsDir);
    const child = spawn(process.execPath, ['--conditions=@spark/source', '--import', 'tsx', main, '--config', h.configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_EXTRA_CA_CERTS: certFile },
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = once(child, 'exit');
    try {
      await h.addUpload(job.manifest);
      assert.equal(await h.settled(job.uuid), 'completed', output);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
    assert.deepEqual(
      receiver.requests.map((r) => [r.url, r.status]),
      expectedOrder(job).map((name) => [`/_upload/master/${name}`, 201]),
    );
    for (const [name, data] of job.contents) {
      assert.deepEqual(await readFile(join(h.root, 'tls-archive', 'master', name)), data, name);
    }
  });
});
