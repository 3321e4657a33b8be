import { createReadStream } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

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

/**
 * PUTs the file at `path` (`size` bytes) to `url`, streaming it from disk so
 * memory stays bounded whatever its size, as dput-ng's http method does (no
 * authentication, `Content-Length` set). An answer that comes before the body
 * is sent (a refusal) stops the sending and is returned as it is, with
 * `bodySent` false. Rejects on network errors, when the connection is not made
 * within `timeouts.connectMs`, and when nothing moves for `timeouts.idleMs`; a
 * slow but steady upload is never cut, whatever the size of the file.
 */
export function putFile(url: string, path: string, size: number, timeouts: PutTimeouts): Promise<PutAnswer> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    // 1 MiB reads: fewer, larger writes to the socket; memory stays a few chunks whatever the file size.
    const file = createReadStream(path, { highWaterMark: 1024 * 1024 });
    const req = send(target, {
      method: 'PUT',
      headers: { 'content-length': String(size), 'content-type': 'application/octet-stream' },
    });
    let fileBytes = 0;
    let answered = false;
    let settled = false;
    let connectTimer: NodeJS.Timeout | undefined;
    let idleWatch: NodeJS.Timeout | undefined;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearInterval(idleWatch);
      file.destroy();
      outcome();
    };
    const fail = (error: Error) =>
      finish(() => {
        req.destroy();
        reject(error);
      });
    file.on('data', (chunk) => (fileBytes += chunk.length));

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
      if (!req.writableEnded) file.unpipe(req);
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
    file.on('error', fail);
    file.pipe(req);
  });
}
