import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dscFileName, jobRecordSchema, parseUploadFileName } from '@spark/protocol';

describe('upload file names', () => {
  it('splits what dpkg names <package>_<version>_<architecture>.<type>', () => {
    assert.deepEqual(parseUploadFileName('hello-dbgsym_2.4-1~bpo12+1_amd64.deb'), {
      package: 'hello-dbgsym',
      version: '2.4-1~bpo12+1',
      architecture: 'amd64',
      type: 'deb',
    });
    assert.deepEqual(parseUploadFileName('libc6.1_2.36_all.buildinfo')?.package, 'libc6.1');
    assert.deepEqual(parseUploadFileName('d-i_20230607_amd64.tar.gz')?.type, 'tar.gz');
  });

  it('refuses names dpkg does not make: no architecture, an epoch, a path, upper case package', () => {
    for (const name of ['hello_2.4-1.deb', 'hello_1:2.4-1_amd64.deb', '../hello_1.0_amd64.deb', 'Hello_1.0_amd64.deb', 'hello_1.0_amd64']) {
      assert.equal(parseUploadFileName(name), null, name);
    }
  });
});

describe('the .dsc of a job', () => {
  it('is the last segment of dsc_url, URL-decoded', () => {
    assert.equal(dscFileName('https://archive.example.org/pool/h/hello/hello_2.4-1.dsc'), 'hello_2.4-1.dsc');
    assert.equal(dscFileName('https://archive.example.org/pool/h/hello/hello_1%3A2.4.dsc'), 'hello_1:2.4.dsc');
  });

  it('is none for a URL whose last segment is no plain .dsc file name', () => {
    for (const url of [
      'https://a.example/pool/hello.tar.gz',
      'https://a.example/pool/..%2Fhello.dsc',
      'https://a.example/%E0%A4%A.dsc',
      'not a url',
    ]) {
      assert.equal(dscFileName(url), null, url);
    }
  });

  it('reads job records written before the .dsc digest was kept', () => {
    const old = {
      uuid: '3b4e0e3c-7d2a-4f44-9a46-0d52c2f1a6b1',
      round: '1',
      kind: 'package-build',
      architecture: 'amd64',
      repo: 'master',
      package: 'hello',
      version: '1.0',
      suite: 'bookworm',
      receivedAt: 1,
    };
    const record = jobRecordSchema.parse(old);
    assert.equal(record.dscSha256, undefined);
    assert.throws(() => jobRecordSchema.parse({ ...old, dscName: '../x.dsc', dscSha256: 'a'.repeat(64) }), /not a valid file name/);
  });
});
