import { createReadStream } from 'node:fs';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { archiveRequest } from './archive-connection.js';

/** What the archive answered to one PUT. */
export interface PutAnswer {
  status: number;
  /** The answer's body as text, at most {@link MAX_ANSWER_CHARS} characters, trimmed. */
  message: string;
}

/** The longest part of an answer's body we keep (it ends up in logs and the job's failure reason). */
export const MAX_ANSWER_CHARS = 2000;

/**
 * PUTs the file at `path` (`size` bytes) to `url`, streaming it from disk so
 * memory stays bounded whatever its size, as dput-ng's http method does (no
 * authentication, `Content-Length` set). An answer that comes before the body
 * is sent (a refusal) stops the sending and is returned as it is. Rejects on
 * network errors and when the whole exchange takes longer than `timeoutMs`.
 * HTTPS verifies against the host's CA store; proxies come from the
 * environment (see archive-connection.ts).
 */
export async function putFile(url: string, path: string, size: number, timeoutMs: number): Promise<PutAnswer> {
  const req = await archiveRequest(
    url,
    { method: 'PUT', headers: { 'content-length': String(size), 'content-type': 'application/octet-stream' } },
    timeoutMs,
  );
  return sendFile(req, path, timeoutMs);
}

function sendFile(req: ClientRequest, path: string, timeoutMs: number): Promise<PutAnswer> {
  return new Promise((resolve, reject) => {
    // 1 MiB reads: fewer, larger writes to the socket; memory stays a few chunks whatever the file size.
    const file = createReadStream(path, { highWaterMark: 1024 * 1024 });
    let answered = false;
    let settled = false;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      file.destroy();
      outcome();
    };
    const fail = (error: Error) =>
      finish(() => {
        req.destroy();
        reject(error);
      });
    const timer = setTimeout(() => fail(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
    // Once an answer is here, a broken pipe from the server closing early is no longer news.
    req.on('error', (error) => {
      if (!answered) fail(error);
    });
    req.on('response', (res: IncomingMessage) => {
      answered = true;
      const bodySent = req.writableFinished;
      if (!bodySent) file.unpipe(req);
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
          resolve({ status: res.statusCode ?? 0, message: message.slice(0, MAX_ANSWER_CHARS).trim() });
        }),
      );
    });
    file.on('error', fail);
    file.pipe(req);
  });
}
