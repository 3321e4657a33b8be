import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startUploadReceiver, type UploadReceiver } from '@spark/testing';
import { startFakeUploadWorld, type FakeUploadWorld } from './fake-upload-world.js';
import { expectedOrder, makeSignedJob, makeSigningKey } from './signed-job.js';

const run = promisify(execFile);
/** What the uploader reads of its environment for HTTPS uploads (main.ts's --help lists them). */
const ENV_NAMES = /^(https?_proxy|no_proxy|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE)$/i;

/*
 * The uploader service on in-memory queues and records (fake-upload-world.ts)
 * against a real TLS receiver and a real CONNECT proxy. The CA store and the
 * proxy are read from the process environment at each request
 * (@spark/service's archive-connection.ts), so each upload runs with its
 * environment set as spark-uploader would be started with it.
 */

describe('spark-uploader over https', () => {
  let h: FakeUploadWorld;
  let gnupgHome: string;
  let receiver: UploadReceiver;
  let certFile: string;

  before(async () => {
    [h, gnupgHome] = await Promise.all([startFakeUploadWorld(), makeSigningKey()]);
    await h.startUploader();
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

  /** Runs one signed job through the uploader with the environment `env` (and none of the other variables it reads); returns the job. */
  async function uploadWith(env: NodeJS.ProcessEnv) {
    h.records.targets = { master: { upload_fqdn: `127.0.0.1:${receiver.port}/_upload`, upload_method: 'https' } };
    const job = await makeSignedJob(gnupgHome, h.workspacesDir, h.logsDir);
    const saved = Object.fromEntries(Object.entries(process.env).filter(([name]) => ENV_NAMES.test(name)));
    for (const name of Object.keys(saved)) delete process.env[name];
    Object.assign(process.env, env);
    try {
      await h.addUpload(job.manifest);
      const settled = await h.settled(job.uuid).catch((error: Error) => `${error.message}`);
      assert.equal(settled, 'completed', h.logLines.slice(-5).join('\n'));
    } finally {
      for (const name of Object.keys(env)) delete process.env[name];
      Object.assign(process.env, saved);
    }
    return job;
  }

  it('verifies the archive against the host CA store (SSL_CERT_FILE stands for /etc/ssl/certs here)', { timeout: 60_000 }, async () => {
    const job = await uploadWith({ SSL_CERT_FILE: certFile });
    for (const [name, data] of job.contents) {
      assert.deepEqual(await readFile(join(h.root, 'tls-archive', 'master', name)), data, name);
    }
  });

  it('goes through https_proxy with CONNECT, and around it when no_proxy names the host', { timeout: 90_000 }, async () => {
    const tunnels: string[] = [];
    const proxy: Server = createServer((_req, res) => res.writeHead(405).end());
    // Tunnelled sockets leave the server's bookkeeping: close them ourselves at the end.
    const sockets = new Set<{ destroy(): void }>();
    proxy.on('connect', (req, client) => {
      tunnels.push(req.url ?? '');
      sockets.add(client);
      const [host, port] = (req.url ?? '').split(':');
      const upstream = connect(Number(port), host, () => {
        sockets.add(upstream);
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      await uploadWith({ SSL_CERT_FILE: certFile, https_proxy: proxyUrl });
      assert.ok(tunnels.length > 0 && tunnels.every((t) => t === `127.0.0.1:${receiver.port}`), tunnels.join());
      const before = tunnels.length;
      await uploadWith({ SSL_CERT_FILE: certFile, HTTPS_PROXY: proxyUrl, no_proxy: 'localhost,127.0.0.1' });
      assert.equal(tunnels.length, before, 'no_proxy bypasses the proxy');
    } finally {
      for (const socket of sockets) socket.destroy();
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('uploads to an https target in dput-ng order, also trusting NODE_EXTRA_CA_CERTS', { timeout: 60_000 }, async () => {
    const from = receiver.requests.length;
    const job = await uploadWith({ NODE_EXTRA_CA_CERTS: certFile });
    assert.deepEqual(
      receiver.requests.slice(from).map((r) => [r.url, r.status]),
      expectedOrder(job).map((name) => [`/_upload/master/${name}`, 201]),
    );
    for (const [name, data] of job.contents) {
      assert.deepEqual(await readFile(join(h.root, 'tls-archive', 'master', name)), data, name);
    }
  });
});
