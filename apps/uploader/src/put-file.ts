import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { archiveRequest } from '@spark/service';

/** What the archive answered to one PUT. */
export interface PutAnswer {
  status: number;
  /** The answer's body as text, at most {@link MAX_ANSWER_CHARS} characters, trimmed. */
  message: string;
  /** True when every byte of the file went out before the answer came: only then may a 2xx count the file as stored. */
  bodySent: boolean;
}

/** The longest part of an answer's body we keep (it ends up in logs and the job's failure reason). */
export const MAX_ANSWER_CHARS = 2000;

/** How long one PUT may wait (`[uploader] ConnectTimeout`, `IdleTimeout`). */
export interface PutTimeouts {
  /** ms for the connection to be made (TCP connect, and the TLS handshake for https). */
  connectMs: number;
  /** ms without progress — no byte of the file taken by the connection, no byte of the answer — before the PUT is cut. */
  idleMs: number;
}

/** A PUT cut by one of its timeouts; the message says which and how far it got. */
export class PutTimeoutError extends Error {
  override name = 'PutTimeoutError';
}

/** What to send: an open file, and the size and SHA-256 its bytes must have. */
export interface PutBody {
  handle: FileHandle;
  size: number;
  sha256: string;
}

/**
 * The file's bytes were not the ones expected, found before its last chunk
 * went out: the PUT was cut, so the archive got at most `bytesSent` of the
 * `size` bytes its `Content-Length` announced — never the whole of a wrong
 * file. `found` says what differed: the SHA-256 of the `size` bytes read, the
 * file's size once they were read (it grew or shrank while it was sent), or
 * where it ended before `size` bytes.
 */
export class BodyMismatchError extends Error {
  override name = 'BodyMismatchError';

  constructor(
    readonly found: { sha256: string } | { size: number } | { endedAt: number },
    /** Bytes of the file handed to the connection before the PUT was cut (0: no byte, no request line went out). */
    readonly bytesSent: number,
  ) {
    super(
      'sha256' in found
        ? `SHA-256 is ${found.sha256}`
        : 'size' in found
          ? `is ${found.size} bytes now`
          : `ended after ${found.endedAt} bytes`,
    );
  }
}

/**
 * PUTs `body.size` bytes of the open file `body.handle` to `url`, streaming it
 * from disk so memory stays bounded whatever its size, as dput-ng's http
 * method does (no authentication, `Content-Length` set), and hashing what it
 * sends: the last chunk goes out only once the SHA-256 of all `size` bytes is
 * `body.sha256` and the file is still `size` bytes; otherwise the PUT is cut
 * and it rejects with {@link BodyMismatchError} (the archive sees a truncated
 * body). An answer that comes before the body is sent (a refusal) stops the
 * sending and is returned as it is, with `bodySent` false. Rejects on network
 * errors, when the connection is not made within `timeouts.connectMs`, and
 * when nothing moves for `timeouts.idleMs`; a slow but steady upload is never
 * cut, whatever the size of the file. HTTPS verifies against the host's CA
 * store; proxies come from the environment (see libs/service
 * archive-connection.ts). The caller closes the handle.
 */
export async function putFile(url: string, body: PutBody, timeouts: PutTimeouts): Promise<PutAnswer> {
  const { size } = body;
  const target = new URL(url);
  const req = await archiveRequest(
    url,
    { method: 'PUT', headers: { 'content-length': String(size), 'content-type': 'application/octet-stream' } },
    timeouts.connectMs,
  );
  return new Promise((resolve, reject) => {
    let fileBytes = 0;
    let stopSending = false;
    let answered = false;
    let settled = false;
    let connectTimer: NodeJS.Timeout | undefined;
    let idleWatch: NodeJS.Timeout | undefined;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearInterval(idleWatch);
      stopSending = true;
      outcome();
    };
    const fail = (error: Error) =>
      finish(() => {
        req.destroy();
        reject(error);
      });

    // Progress is bytes moving on the connection either way: those the kernel took (handed to the socket
    // less what still waits in its queue: a 1 MiB chunk on a slow link is taken bit by bit) and those
    // read. The watch starts once the connection is made.
    const moved = (socket: Socket) => socket.bytesWritten - socket.bufferSize + socket.bytesRead;
    const watchProgress = (socket: Socket) => {
      let last = moved(socket);
      let lastMovedAt = Date.now();
      idleWatch = setInterval(
        () => {
          const now = moved(socket);
          if (now !== last) {
            last = now;
            lastMovedAt = Date.now();
          } else if (Date.now() - lastMovedAt >= timeouts.idleMs) {
            const where = answered ? 'while the answer came' : `after ${fileBytes} of ${size} bytes of the file`;
            fail(new PutTimeoutError(`no progress for ${timeouts.idleMs / 1000} s ${where}; cut the connection`));
          }
        },
        Math.max(10, Math.min(1_000, timeouts.idleMs / 4)),
      );
      idleWatch.unref();
    };
    req.on('socket', (socket: Socket) => {
      if (!socket.connecting) {
        watchProgress(socket);
        return;
      }
      connectTimer = setTimeout(
        () => fail(new PutTimeoutError(`no connection to ${target.host} within ${timeouts.connectMs / 1000} s`)),
        timeouts.connectMs,
      );
      socket.once(socket instanceof TLSSocket ? 'secureConnect' : 'connect', () => {
        clearTimeout(connectTimer);
        if (!settled) watchProgress(socket);
      });
    });
    // Once an answer is here, a broken pipe from the server closing early is no longer news.
    req.on('error', (error) => {
      if (!answered) fail(error);
    });
    req.on('response', (res: IncomingMessage) => {
      answered = true;
      const bodySent = req.writableEnded && fileBytes === size;
      if (!req.writableEnded) stopSending = true;
      let message = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (message.length < MAX_ANSWER_CHARS) message += chunk;
      });
      res.on('error', fail);
      res.on('end', () =>
        finish(() => {
          // A half-sent request leaves the connection unusable for the next one.
          if (!bodySent) req.destroy();
          resolve({ status: res.statusCode ?? 0, message: message.slice(0, MAX_ANSWER_CHARS).trim(), bodySent });
        }),
      );
    });
    sendBody(
      body,
      req,
      () => stopSending,
      (bytes) => (fileBytes += bytes),
    ).catch((error: unknown) => {
      if (!answered) fail(error as Error);
    });
  });
}

/**
 * Bytes per read and write: two of these are all the memory a PUT takes. Measured on 2 cores
 * uploading 1 GiB over loopback, CPU time of the uploader per GiB: 64 KiB 0.5 s user + 0.8 s sys,
 * 1 MiB 0.2 + 0.6, 4 MiB 0.08 + 0.4 (curl -T: 0.02 + 0.3) — and the receiver shares those cores.
 * 1 MiB since the services run with --lite-mode (nodeFlags('uploader')): the uploader idles at about
 * 60 MiB, and 2 × 4 MiB took its peak to 70 MiB for 1 GiB, 2 × 2 MiB to 65, 2 × 1 MiB to 63 (issue
 * 16's bound: 64), at ×0.84–0.88 of curl -T's throughput against ×0.88–0.91 with 2–4 MiB
 * (docs/benchmarks.md, "Upload at link speed").
 */
const CHUNK_BYTES = 1024 * 1024;

/** Buffers of finished PUTs, for the next: one upload after another costs the same 2 MiB, not 2 MiB of garbage each. */
const spareBuffers: Buffer[] = [];

/**
 * Streams `body.size` bytes of `body.handle` into `req` and ends it. Two
 * buffers, reused: the next chunk is read while the last one is written, and a
 * buffer is read into again only once its write has completed (the socket has
 * taken its bytes). Neither a stream nor a buffer per chunk: a 1 GiB file costs
 * 2 MiB and no garbage. Each chunk is hashed as it is read (SHA-256 runs at
 * over 1 GiB/s, several times the rate of a PUT); the last one is held back
 * until the digest and the file's size are confirmed, so a wrong file never
 * reaches the archive whole. Stops without ending `req` once `stopped()` (an
 * early answer, a failure); rejects with {@link BodyMismatchError} when the
 * bytes are not the expected ones, and when a write fails.
 */
async function sendBody(body: PutBody, req: ClientRequest, stopped: () => boolean, sent: (bytes: number) => void): Promise<void> {
  const { handle: file, size } = body;
  const hash = createHash('sha256');
  let sentBytes = 0;
  // Hands nothing more to the connection unless all `size` bytes read are the expected ones.
  const confirm = async () => {
    const sha256 = hash.digest('hex');
    if (sha256 !== body.sha256) throw new BodyMismatchError({ sha256 }, sentBytes);
    const now = (await file.stat()).size;
    if (now !== size) throw new BodyMismatchError({ size: now }, sentBytes);
  };
  let reuse: Buffer[] = [];
  let unfinishedWrites = 0;
  try {
    const buffers = [spareBuffers.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES), spareBuffers.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES)];
    reuse = buffers;
    const closed = new Promise<never>((_, reject) => req.once('close', () => reject(new Error('the connection closed'))));
    closed.catch(() => undefined);
    let writing: Promise<void> = Promise.resolve();
    for (let offset = 0, turn = 0; offset < size && !stopped(); turn ^= 1) {
      const buffer = buffers[turn] as Buffer;
      // This buffer's last write was awaited before the write that followed it was started.
      const { bytesRead } = await file.read(buffer, 0, Math.min(CHUNK_BYTES, size - offset), offset);
      if (bytesRead === 0) throw new BodyMismatchError({ endedAt: offset }, sentBytes);
      const chunk = buffer.subarray(0, bytesRead);
      hash.update(chunk);
      if (offset + bytesRead === size) await confirm();
      await Promise.race([writing, closed]);
      if (stopped()) return;
      offset += bytesRead;
      unfinishedWrites += 1;
      writing = new Promise<void>((resolve, reject) =>
        req.write(chunk, (error) => {
          if (error) return reject(error);
          unfinishedWrites -= 1;
          resolve();
        }),
      );
      writing.catch(() => undefined);
      sentBytes += bytesRead;
      sent(bytesRead);
    }
    if (size === 0) await confirm();
    await Promise.race([writing, closed]);
    if (!stopped()) req.end();
  } finally {
    // A buffer the socket may still hold (a write that never completed) is not reused.
    if (unfinishedWrites === 0) spareBuffers.push(...reuse.slice(0, Math.max(0, 2 - spareBuffers.length)));
  }
}
