import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeSourcePackage } from '@spark/testing';
import { fetchSource, SourceFetchError } from '../src/fetch-source.js';
import { openJobLog, type JobLog } from '../src/job-log.js';
import { serveDirectory } from './fixtures.js';
import { startStallingServer, type StallingServer } from './faults.js';

/*
 * A listener that never accepts, with a backlog of one already taken: the
 * kernel drops further SYNs, so a connect to it hangs as one to an
 * unreachable archive does (Node accepts every connection, Python's listen(0) does not).
 */
const FULL_BACKLOG = `
import socket, sys, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)
print(s.getsockname()[1], flush=True)
time.sleep(120)
`;

describe('fetchSource: downloads that stall fail in bounded time, naming the URL', { timeout: 180_000 }, () => {
  let root: string;
  let log: JobLog;
  let archive: Awaited<ReturnType<typeof serveDirectory>>;
  let stalling: StallingServer;
  let redirector: Server;
  let redirectUrl: string;
  let dscSha256: string;
  let listener: ChildProcess;
  let backlogPort: number;
  const fillers: Socket[] = [];
  const timeouts = { connectMs: 800, idleMs: 800 };
  const freshDir = async (name: string) => {
    const dir = join(root, name);
    await mkdir(dir);
    return dir;
  };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'spark-fetch-'));
    log = await openJobLog(join(root, 'job.log'));
    await mkdir(join(root, 'archive'));
    const pkg = await makeSourcePackage(join(root, 'archive'), { name: 'fetched', version: '1.0' });
    dscSha256 = createHash('sha256')
      .update(await readFile(pkg.dsc))
      .digest('hex');
    archive = await serveDirectory(join(root, 'archive'));
    stalling = await startStallingServer();
    redirector = createServer((request, response) => {
      response.writeHead(302, { location: `${archive.url}${request.url ?? '/'}` });
      response.end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    const address = redirector.address();
    redirectUrl = typeof address === 'object' && address !== null ? `http://127.0.0.1:${address.port}` : '';
    listener = spawn('python3', ['-c', FULL_BACKLOG], { stdio: ['ignore', 'pipe', 'inherit'] });
    backlogPort = await new Promise<number>((resolve) =>
      listener.stdout?.once('data', (chunk: Buffer) => resolve(Number(chunk.toString()))),
    );
    for (let i = 0; i < 2; i++) fillers.push(connect(backlogPort, '127.0.0.1').on('error', () => undefined));
  });
  after(async () => {
    for (const socket of fillers) socket.destroy();
    listener?.kill();
    await log?.close();
    await stalling?.close();
    await archive?.close();
    await new Promise((resolve) => redirector?.close(resolve));
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('downloads and verifies a source package through a redirect', async () => {
    const dir = await freshDir('redirected');
    const fetched = await fetchSource(`${redirectUrl}/fetched_1.0.dsc`, dscSha256, dir, log, new AbortController().signal, timeouts);
    assert.equal(fetched.source, 'fetched');
    assert.deepEqual((await readdir(dir)).sort(), ['fetched_1.0.dsc', 'fetched_1.0.tar.xz']);
  });

  it('fails a connection the archive never completes after DownloadConnectTimeout', async () => {
    const url = `http://127.0.0.1:${backlogPort}/fetched_1.0.dsc`;
    // The message names the limit that ended the download; without it, the connect would hang past the suite's timeout.
    await assert.rejects(
      fetchSource(url, dscSha256, await freshDir('unconnected'), log, new AbortController().signal, timeouts),
      (error: unknown) =>
        error instanceof SourceFetchError &&
        error.message === `cannot download ${url}: no connection to 127.0.0.1:${backlogPort} within 0.8 s (DownloadConnectTimeout)`,
    );
  });

  for (const path of ['silent', 'half']) {
    it(`fails a download whose server goes quiet (${path === 'silent' ? 'before answering' : 'in the middle of the body'}) after DownloadIdleTimeout, leaving no partial file`, async () => {
      const url = `${stalling.url}/${path}/fetched_1.0.dsc`;
      const dir = await freshDir(path);
      await assert.rejects(
        fetchSource(url, dscSha256, dir, log, new AbortController().signal, timeouts),
        (error: unknown) =>
          error instanceof SourceFetchError && error.message === `cannot download ${url}: no data received for 0.8 s (DownloadIdleTimeout)`,
      );
      assert.deepEqual(await readdir(dir), []);
    });
  }

  it('keeps a slow download that never goes quiet for DownloadIdleTimeout', async () => {
    const slow = createServer((_request, response) => {
      response.writeHead(200);
      let sent = 0;
      const timer = setInterval(() => {
        response.write('.');
        if (++sent === 12) {
          clearInterval(timer);
          response.end();
        }
      }, 300);
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const address = slow.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}/fetched_1.0.dsc`;
    try {
      // 3.6 s in all, never 3 s without a byte: the download completes (and is then refused on its content). The
      // server runs in this process: were the limit 0.8 s, this process held up for half a second (a loaded machine)
      // would find its idle timer due before it read the byte that came meanwhile.
      const started = Date.now();
      await assert.rejects(
        fetchSource(url, dscSha256, await freshDir('slow'), log, new AbortController().signal, { ...timeouts, idleMs: 3_000 }),
        (error: unknown) =>
          error instanceof SourceFetchError && /^fetched_1\.0\.dsc: SHA-256 is [0-9a-f]{64}, the job expects/.test(error.message),
      );
      assert.ok(Date.now() - started >= 3_300);
    } finally {
      slow.closeAllConnections();
      await new Promise((resolve) => slow.close(resolve));
    }
  });
});
