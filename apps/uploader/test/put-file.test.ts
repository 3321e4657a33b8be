import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { putFile, PutTimeoutError } from '../src/put-file.js';

function listen(server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

describe('putFile timeouts', () => {
  let dir: string;
  let file: string;
  const size = 24 * 1024 * 1024;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-put-file-'));
    file = join(dir, 'big.deb');
    await writeFile(file, randomBytes(size));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('does not cut a slow but steady PUT that takes far longer than IdleTimeout', { timeout: 30_000 }, async () => {
    // Takes at most 800 KiB per 100 ms (8 MiB/s): about 3 s for the file, against an idle timeout of 1 s.
    const server = createHttpServer((req, res) => {
      let received = 0;
      let window = 0;
      const timer = setInterval(() => {
        window = 0;
        req.resume();
      }, 100);
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        window += chunk.length;
        if (window >= 800 * 1024) req.pause();
      });
      req.on('end', () => {
        clearInterval(timer);
        res.writeHead(201).end(`stored ${received} bytes`);
      });
    });
    const port = await listen(server);
    try {
      const started = Date.now();
      const answer = await putFile(`http://127.0.0.1:${port}/master/big.deb`, file, size, { connectMs: 1_000, idleMs: 1_000 });
      assert.deepEqual(answer, { status: 201, message: `stored ${size} bytes`, bodySent: true });
      assert.ok(Date.now() - started > 1_500, `took only ${Date.now() - started} ms: the server did not throttle`);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('cuts a PUT after IdleTimeout once the archive stops reading, saying how far it got', { timeout: 30_000 }, async () => {
    const server = createHttpServer((req) => req.pause());
    const port = await listen(server);
    try {
      await assert.rejects(
        putFile(`http://127.0.0.1:${port}/master/big.deb`, file, size, { connectMs: 1_000, idleMs: 500 }),
        (error: Error) => {
          assert.ok(error instanceof PutTimeoutError);
          assert.match(error.message, new RegExp(`^no progress for 0\\.5 s after \\d+ of ${size} bytes of the file; cut the connection$`));
          return true;
        },
      );
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('fails after ConnectTimeout when the TLS handshake never completes', { timeout: 30_000 }, async () => {
    const sockets: Socket[] = [];
    const server = createTcpServer((socket) => sockets.push(socket));
    const port = await listen(server);
    try {
      const started = Date.now();
      await assert.rejects(putFile(`https://127.0.0.1:${port}/master/big.deb`, file, size, { connectMs: 700, idleMs: 60_000 }), {
        name: 'PutTimeoutError',
        message: `no connection to 127.0.0.1:${port} within 0.7 s`,
      });
      assert.ok(Date.now() - started < 5_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });
});
