import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@spark/testing';
import { BodyMismatchError, putFile, PutTimeoutError, type PutBody, type PutTimeouts } from '../src/put-file.js';

function listen(server: Server | ReturnType<typeof createTcpServer>): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** PUTs `file` expecting `sha256` (default: its own), closing it afterwards. */
async function put(url: string, file: string, size: number, timeouts: PutTimeouts, sha256?: string) {
  const handle = await open(file, 'r');
  try {
    const body: PutBody = {
      handle,
      size,
      sha256:
        sha256 ??
        createHash('sha256')
          .update(await handle.readFile())
          .digest('hex'),
    };
    return await putFile(url, body, timeouts);
  } finally {
    await handle.close();
  }
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
      const answer = await put(`http://127.0.0.1:${port}/master/big.deb`, file, size, { connectMs: 1_000, idleMs: 1_000 });
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
        put(`http://127.0.0.1:${port}/master/big.deb`, file, size, { connectMs: 1_000, idleMs: 500 }),
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
      await assert.rejects(put(`https://127.0.0.1:${port}/master/big.deb`, file, size, { connectMs: 700, idleMs: 60_000 }), {
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

describe('putFile sends only the expected bytes', () => {
  let dir: string;
  let server: Server;
  let port: number;
  /** What the server received of each PUT, whether the body ended (all of Content-Length arrived), and whether the request is over (ended or cut). */
  const received: { bytes: number; complete: boolean; over: boolean }[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-put-file-'));
    server = createHttpServer((req, res) => {
      const seen = { bytes: 0, complete: false, over: false };
      received.push(seen);
      req.on('data', (chunk: Buffer) => (seen.bytes += chunk.length));
      req.on('close', () => (seen.over = true));
      req.on('end', () => {
        seen.complete = true;
        res.writeHead(201).end('stored');
      });
      req.on('error', () => undefined);
    });
    port = await listen(server);
  });
  after(async () => {
    server.closeAllConnections();
    server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const timeouts = { connectMs: 2_000, idleMs: 5_000 };
  /** Resolves once the server saw the one PUT that reached it end or be cut. */
  const cutOrEnded = () =>
    waitFor('the PUT to be over at the server', () => received.length === 1 && received[0]!.over, {
      timeoutMs: 5_000,
      detail: () => JSON.stringify(received),
    });
  /** That no request came cannot be awaited: 200 ms, far longer than one takes to arrive over loopback. */
  const noRequestYet = () => new Promise((resolve) => setTimeout(resolve, 200));

  it('holds back the last 1 MiB chunk of a file whose SHA-256 is not the expected one and cuts the PUT: the server never gets all of it', async () => {
    const size = 5 * 1024 * 1024 + 4321;
    const data = randomBytes(size);
    const path = join(dir, 'changed.deb');
    await writeFile(path, data);
    const expected = createHash('sha256')
      .update(Buffer.concat([data.subarray(0, size - 1), Buffer.from([data[size - 1]! ^ 1])]))
      .digest('hex');
    received.length = 0;
    await assert.rejects(put(`http://127.0.0.1:${port}/master/changed.deb`, path, size, timeouts, expected), (error: unknown) => {
      assert.ok(error instanceof BodyMismatchError, String(error));
      assert.deepEqual(error.found, { sha256: createHash('sha256').update(data).digest('hex') });
      assert.equal(error.bytesSent, 5 * 1024 * 1024);
      return true;
    });
    await cutOrEnded();
    assert.equal(received.length, 1);
    assert.ok(received[0]!.bytes <= 5 * 1024 * 1024 && !received[0]!.complete, JSON.stringify(received));
  });

  it('sends nothing of a file of less than a chunk whose SHA-256 is not the expected one', async () => {
    const path = join(dir, 'small.dsc');
    await writeFile(path, 'Source: hello\n');
    received.length = 0;
    await assert.rejects(put(`http://127.0.0.1:${port}/master/small.dsc`, path, 14, timeouts, 'a'.repeat(64)), (error: unknown) => {
      assert.ok(error instanceof BodyMismatchError && error.bytesSent === 0 && 'sha256' in error.found);
      return true;
    });
    await noRequestYet();
    assert.deepEqual(received, [], 'no request reached the server');
  });

  it('cuts the PUT of a file that grew while it was sent, though the bytes it read are the expected ones', async () => {
    const size = 3 * 1024 * 1024;
    const data = randomBytes(size);
    const path = join(dir, 'grows.deb');
    await writeFile(path, data);
    const handle = await open(path, 'r');
    const writer = await open(path, 'r+');
    try {
      // Grows the file once the first chunk is read: the fstat before the last chunk sees it.
      const read = handle.read.bind(handle);
      let reads = 0;
      (handle as { read: unknown }).read = async (...args: Parameters<typeof handle.read>) => {
        const result = await read(...args);
        if (reads++ === 0) await writer.write(Buffer.from('more'), 0, 4, size);
        return result;
      };
      received.length = 0;
      const sha256 = createHash('sha256').update(data).digest('hex');
      await assert.rejects(putFile(`http://127.0.0.1:${port}/master/grows.deb`, { handle, size, sha256 }, timeouts), (error: unknown) => {
        assert.ok(error instanceof BodyMismatchError, String(error));
        assert.deepEqual([error.found, error.bytesSent], [{ size: size + 4 }, 2 * 1024 * 1024]);
        return true;
      });
    } finally {
      await writer.close();
      await handle.close();
    }
    await cutOrEnded();
    assert.ok(received.every((r) => !r.complete) && received.length === 1, JSON.stringify(received));
  });

  it('sends a file whose bytes are the expected ones, whole, and an empty file', async () => {
    const size = 2 * 1024 * 1024 + 1;
    const path = join(dir, 'honest.deb');
    await writeFile(path, randomBytes(size));
    await writeFile(join(dir, 'empty.log'), '');
    received.length = 0;
    assert.deepEqual(await put(`http://127.0.0.1:${port}/master/honest.deb`, path, size, timeouts), {
      status: 201,
      message: 'stored',
      bodySent: true,
    });
    assert.deepEqual(await put(`http://127.0.0.1:${port}/master/empty.log`, join(dir, 'empty.log'), 0, timeouts), {
      status: 201,
      message: 'stored',
      bodySent: true,
    });
    assert.deepEqual(
      received.map(({ bytes, complete }) => ({ bytes, complete })),
      [
        { bytes: size, complete: true },
        { bytes: 0, complete: true },
      ],
    );
  });
});
