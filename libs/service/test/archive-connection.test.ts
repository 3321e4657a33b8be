import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { hostCertificates, proxyFor } from '@spark/service';

describe('archive connections', () => {
  it('takes https_proxy for https and http_proxy for http, in either case', () => {
    const env = { https_proxy: 'http://proxy.example:3128', HTTP_PROXY: 'proxy.example:8080' };
    assert.equal(proxyFor(new URL('https://archive.example.org/_upload/x'), env)?.href, 'http://proxy.example:3128/');
    assert.equal(proxyFor(new URL('http://archive.example.org/x'), env)?.href, 'http://proxy.example:8080/');
    assert.equal(proxyFor(new URL('https://archive.example.org/x'), {}), null);
  });

  it('bypasses the proxy for hosts, domains, host:port and * in no_proxy', () => {
    const env = (noProxy: string) => ({ https_proxy: 'http://proxy.example:3128', no_proxy: noProxy });
    const target = new URL('https://upload.archive.example.org/x');
    for (const noProxy of [
      'upload.archive.example.org',
      'example.org',
      '.archive.example.org',
      '*',
      'other, upload.archive.example.org:443',
    ]) {
      assert.equal(proxyFor(target, env(noProxy)), null, noProxy);
    }
    for (const noProxy of ['', 'ample.org', 'upload.archive.example.org:8443', 'other.example']) {
      assert.notEqual(proxyFor(target, env(noProxy)), null, noProxy);
    }
  });

  it('verifies against the host CA store, plus NODE_EXTRA_CA_CERTS', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spark-ca-'));
    try {
      await writeFile(join(dir, 'store.pem'), 'STORE');
      await writeFile(join(dir, 'extra.pem'), 'EXTRA');
      assert.deepEqual(hostCertificates({ SSL_CERT_FILE: join(dir, 'store.pem') }), ['STORE']);
      assert.deepEqual(hostCertificates({ SSL_CERT_FILE: join(dir, 'store.pem'), NODE_EXTRA_CA_CERTS: join(dir, 'extra.pem') }), [
        'STORE',
        'EXTRA',
      ]);
      assert.equal(hostCertificates({ SSL_CERT_FILE: join(dir, 'missing.pem') }), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
