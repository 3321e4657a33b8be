import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startUploadReceiver, waitFor, type UploadReceiver } from '@spark/testing';

function put(receiver: UploadReceiver, path: string, body: string | Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${receiver.url}${path}`, { method: 'PUT', headers: { 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('upload receiver (Laniakea semantics)', () => {
  let dir: string;
  let receiver: UploadReceiver;
  /** Waits until the receiver has recorded the PUT of `url` as cut off (status 0). */
  const cutRecorded = (url: string) =>
    waitFor(`the cut PUT of ${url} recorded`, () => receiver.requests.some((r) => r.url === url && r.status === 0), {
      timeoutMs: 5_000,
      intervalMs: 10,
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-receiver-'));
    receiver = await startUploadReceiver({ dir, repos: ['master'], pathPrefix: '/_upload' });
  });
  after(async () => {
    await receiver.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('stores a PUT under <repo>/<file> and answers 201, then 403 for the same file', async () => {
    const first = await put(receiver, '/_upload/master/hello_1.0.dsc', 'first');
    assert.equal(first.status, 201);
    const second = await put(receiver, '/_upload/master/hello_1.0.dsc', 'second');
    assert.equal(second.status, 403);
    assert.match(second.text, /already exists/);
    assert.equal(await readFile(join(dir, 'master', 'hello_1.0.dsc'), 'utf8'), 'first');
  });

  it('answers 422 for an unknown repository and for a name that is not a plain file name', async () => {
    const repo = await put(receiver, '/_upload/extra/hello_1.0.dsc', 'x');
    assert.equal(repo.status, 422);
    assert.equal(repo.text.trim(), 'unknown repository: extra');
    const name = await put(receiver, '/_upload/master/..%2Fescape', 'x');
    assert.equal(name.status, 422);
    assert.match(name.text, /invalid file name/);
    assert.deepEqual(await readdir(dir), ['master']);
  });

  it('answers 404 outside its path prefix and 405 for other methods', async () => {
    assert.equal((await put(receiver, '/master/a.dsc', 'x')).status, 404);
    const got = await new Promise<number>((resolve, reject) => {
      request(`${receiver.url}/_upload/master/a.dsc`, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', reject)
        .end();
    });
    assert.equal(got, 405);
  });

  it('fails the planned fraction of PUTs with 503, and planned files with their status', async () => {
    receiver.options.failFraction = 0.5;
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await put(receiver, `/_upload/master/f${i}.deb`, 'x')).status);
    assert.deepEqual(statuses.filter((s) => s === 503).length, 2);
    receiver.options.failFraction = 0;
    receiver.options.failFiles = new Map([['g.deb', { status: 500, times: 1, message: 'disk full' }]]);
    const failed = await put(receiver, '/_upload/master/g.deb', 'x');
    assert.deepEqual([failed.status, failed.text.trim()], [500, 'disk full']);
    assert.equal((await put(receiver, '/_upload/master/g.deb', 'x')).status, 201);
  });

  it('keeps nothing of an upload whose client goes away half-way', async () => {
    await new Promise<void>((resolve) => {
      const req = request(`${receiver.url}/_upload/master/partial.deb`, { method: 'PUT', headers: { 'content-length': '1000' } });
      req.on('error', () => resolve());
      req.write('only 17 bytes of ', () => setTimeout(() => req.destroy(), 50));
      req.on('close', () => resolve());
    });
    await cutRecorded('/_upload/master/partial.deb');
    const files = await readdir(join(dir, 'master'));
    assert.ok(!files.some((f) => f.includes('partial')), files.join(' '));
    assert.deepEqual(receiver.requests.at(-1), { method: 'PUT', url: '/_upload/master/partial.deb', status: 0 });
  });

  it('records every request with method, url and status', () => {
    assert.deepEqual(receiver.requests.slice(0, 2), [
      { method: 'PUT', url: '/_upload/master/hello_1.0.dsc', status: 201 },
      { method: 'PUT', url: '/_upload/master/hello_1.0.dsc', status: 403 },
    ]);
  });

  it('as lkwebupload (writeInPlace), keeps the partial file of an interrupted PUT and answers 403 to every later PUT of it until it is removed', async () => {
    receiver.options.writeInPlace = true;
    try {
      await new Promise<void>((resolve) => {
        const req = request(`${receiver.url}/_upload/master/cut.deb`, { method: 'PUT', headers: { 'content-length': '1000' } });
        req.on('error', () => resolve());
        req.write('only 17 bytes of ', () => setTimeout(() => req.destroy(), 50));
        req.on('close', () => resolve());
      });
      await cutRecorded('/_upload/master/cut.deb');
      assert.equal(await readFile(join(dir, 'master', 'cut.deb'), 'utf8'), 'only 17 bytes of ');
      assert.deepEqual(receiver.requests.at(-1), { method: 'PUT', url: '/_upload/master/cut.deb', status: 0 });
      const again = await put(receiver, '/_upload/master/cut.deb', 'x'.repeat(1000));
      assert.deepEqual([again.status, again.text.trim()], [403, 'file cut.deb already exists in master']);
      await rm(join(dir, 'master', 'cut.deb'));
      assert.equal((await put(receiver, '/_upload/master/cut.deb', 'x'.repeat(1000))).status, 201);

      receiver.options.failFiles = new Map([['planned-cut.deb', { cutAfterBytes: 300, times: 1 }]]);
      await assert.rejects(put(receiver, '/_upload/master/planned-cut.deb', Buffer.alloc(100_000, 7)));
      await cutRecorded('/_upload/master/planned-cut.deb');
      const partial = await readFile(join(dir, 'master', 'planned-cut.deb'));
      assert.ok(partial.length > 0 && partial.length <= 300, `partial file of ${partial.length} bytes`);
      assert.equal((await put(receiver, '/_upload/master/planned-cut.deb', Buffer.alloc(100_000, 7))).status, 403);
    } finally {
      receiver.options.writeInPlace = false;
      receiver.options.failFiles = new Map();
    }
  });
});
