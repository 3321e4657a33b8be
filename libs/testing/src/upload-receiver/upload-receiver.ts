import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, link, mkdir, unlink } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * A file name the receiver takes: one path segment of the characters Debian
 * file names use, not starting with a dot. The receiver keeps its own rule
 * rather than the worker's, as the archive it stands in for does.
 */
const UPLOAD_NAME = /^[A-Za-z0-9][A-Za-z0-9.+~_-]*$/;

/** One request the receiver handled, in the order it decided the answers. */
export interface ReceivedRequest {
  method: string;
  /** The request target as sent, e.g. `/_upload/master/hello_1.0.dsc`. */
  url: string;
  /** The status answered, or 0 when the client went away before its body was complete. */
  status: number;
}

/**
 * A planned failure for one file name, for its first `times` PUTs (default:
 * every PUT): answer `status`; or, with `cutAfterBytes`, take that many bytes
 * of the body and then cut the connection; or, with `stallAfterBytes`, take
 * that many bytes and then read nothing more, holding the connection open
 * for `stallMs`, then dropping it.
 */
export interface FileFailure {
  /** Status to answer (default 500); not used with `cutAfterBytes` or `stallAfterBytes`. */
  status?: number;
  times?: number;
  /** Body of the error answer (default: a short text naming the file). */
  message?: string;
  cutAfterBytes?: number;
  stallAfterBytes?: number;
  /** How long a stall lasts before the receiver drops the connection itself, in ms (default 30 s). */
  stallMs?: number;
}

/** How the receiver behaves; every switch can be changed while it runs through {@link UploadReceiver.options}. */
export interface UploadReceiverOptions {
  /** Directory that gets one subdirectory per repository (`<dir>/<repo>/<file>`). */
  dir: string;
  /** Repositories it accepts uploads for; any other answers 422. */
  repos: readonly string[];
  /** Path before `/<repo>/`, as an fqdn's path (`/_upload`); default none. */
  pathPrefix?: string;
  /** Fraction 0..1 of PUTs answered 503, spread evenly (deterministic: 0.5 fails every other PUT). Default 0. */
  failFraction?: number;
  /** Planned failures by file name. */
  failFiles?: Map<string, FileFailure>;
  /** ms to wait after a file is stored before answering 201 (to kill a client mid-upload). Default 0. */
  answerDelayMs?: number;
  /**
   * Store as lkwebupload does: each PUT is written straight into `<dir>/<repo>/<file>`, so an
   * interrupted PUT leaves a partial file there, and every later PUT of that name answers 403
   * until someone removes it. Default false: bodies go to a temp file linked into place only
   * when complete, so an interrupted upload leaves nothing.
   */
  writeInPlace?: boolean;
  /** Interface to listen on (default `127.0.0.1`). */
  host?: string;
  /** Port (default 0: a free one). */
  port?: number;
  /** Called with each request as it is recorded (the demo prints them). */
  onRequest?: (request: ReceivedRequest) => void;
  /** Serve HTTPS with this PEM key and certificate instead of HTTP. */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

/** A running receiver. */
export interface UploadReceiver {
  /** `http://127.0.0.1:<port>` (`https://` with `tls`). */
  readonly url: string;
  readonly port: number;
  /** The live options: tests change the failure switches while it runs. */
  readonly options: UploadReceiverOptions;
  /** Every answered request, in order. */
  readonly requests: ReceivedRequest[];
  /** Stops listening and closes open connections. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * An HTTP upload receiver with Laniakea's semantics, for tests and the demo:
 * `PUT [prefix]/<repo>/<filename>` stores the body as `<dir>/<repo>/<filename>`
 * and answers 201; 403 when that file already exists; 422 for an unknown
 * repository or a name that is not a plain Debian file name; 405 for other
 * methods, 404 for other paths. Bodies are streamed to a temp file and linked
 * into place only when complete, so an interrupted upload leaves nothing —
 * unless `writeInPlace` asks for lkwebupload's way (a partial file stays).
 */
export async function startUploadReceiver(options: UploadReceiverOptions): Promise<UploadReceiver> {
  const requests: ReceivedRequest[] = [];
  let putCount = 0;

  const record = (request: ReceivedRequest) => {
    requests.push(request);
    options.onRequest?.(request);
  };
  const answer = (req: IncomingMessage, res: ServerResponse, status: number, message: string): void => {
    record({ method: req.method ?? '', url: req.url ?? '', status });
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${message}\n`);
  };
  // An early answer must not leave the client's body half-sent: drain it first (bounded memory: it is discarded).
  const answerAfterBody = (req: IncomingMessage, res: ServerResponse, status: number, message: string): void => {
    req.on('end', () => answer(req, res, status, message));
    req.on('error', () => res.destroy());
    req.resume();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'PUT') {
      answerAfterBody(req, res, 405, `method ${req.method ?? ''} not allowed: upload with PUT`);
      return;
    }
    const target = parseTarget(req.url ?? '', options.pathPrefix ?? '');
    if (!target) {
      answerAfterBody(req, res, 404, `no upload location ${req.url ?? ''}`);
      return;
    }
    const { repo, name } = target;
    if (!options.repos.includes(repo) || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(repo)) {
      answerAfterBody(req, res, 422, `unknown repository: ${repo}`);
      return;
    }
    if (!UPLOAD_NAME.test(name)) {
      answerAfterBody(req, res, 422, `invalid file name: ${name}`);
      return;
    }
    const planned = options.failFiles?.get(name);
    let limit: Limit | null = null;
    if (planned && (planned.times === undefined || planned.times > 0)) {
      if (planned.times !== undefined) planned.times -= 1;
      if (planned.cutAfterBytes !== undefined) limit = { bytes: planned.cutAfterBytes, then: 'cut' };
      else if (planned.stallAfterBytes !== undefined)
        limit = { bytes: planned.stallAfterBytes, then: 'stall', stallMs: planned.stallMs ?? 30_000 };
      else {
        answerAfterBody(req, res, planned.status ?? 500, planned.message ?? `planned failure for ${name}`);
        return;
      }
    }
    const fraction = options.failFraction ?? 0;
    const n = putCount++;
    if (Math.floor((n + 1) * fraction) > Math.floor(n * fraction)) {
      answerAfterBody(req, res, 503, 'service unavailable (planned failure)');
      return;
    }
    const repoDir = join(options.dir, repo);
    const final = join(repoDir, name);
    if (await exists(final)) {
      answerAfterBody(req, res, 403, `file ${name} already exists in ${repo}`);
      return;
    }
    await mkdir(repoDir, { recursive: true });
    const limited = limit ? limitBody(req, limit) : null;
    const body = limited?.body ?? req;
    const dropConnection = () => {
      record({ method: 'PUT', url: req.url ?? '', status: 0 });
      req.socket.destroy();
    };
    if (options.writeInPlace) {
      try {
        await pipeline(body, createWriteStream(final, { flags: 'wx' }));
        if (limited?.cut()) {
          dropConnection();
          return;
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
          answerAfterBody(req, res, 403, `file ${name} already exists in ${repo}`);
          return;
        }
        // What arrived stays: lkwebupload writes straight into the target file.
        record({ method: 'PUT', url: req.url ?? '', status: 0 });
        res.destroy();
        return;
      }
      answer(req, res, 201, `stored ${repo}/${name}`);
      return;
    }
    const temp = join(repoDir, `.${name}.${randomBytes(6).toString('hex')}.part`);
    try {
      await pipeline(body, createWriteStream(temp, { flags: 'wx' }));
      if (limited?.cut()) throw new Error('planned cut');
    } catch {
      await unlink(temp).catch(() => undefined);
      record({ method: 'PUT', url: req.url ?? '', status: 0 });
      res.destroy();
      return;
    }
    try {
      await link(temp, final);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      answer(req, res, 403, `file ${name} already exists in ${repo}`);
      return;
    } finally {
      await unlink(temp).catch(() => undefined);
    }
    const delay = options.answerDelayMs ?? 0;
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    answer(req, res, 201, `stored ${repo}/${name}`);
  };

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) answer(req, res, 500, `receiver error: ${(error as Error).message}`);
      else res.destroy();
    });
  };
  const server: Server = options.tls ? createTlsServer(options.tls, listener) : createServer(listener);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | null = null;
  return {
    url: `${options.tls ? 'https' : 'http'}://${options.host ?? '127.0.0.1'}:${port}`,
    port,
    options,
    requests,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

/** Where {@link limitBody} stops taking a body, and what it does then. */
interface Limit {
  bytes: number;
  then: 'cut' | 'stall';
  stallMs?: number;
}

/**
 * The body up to `limit.bytes`. A cut then ends the stream there (what arrived
 * is stored; the caller drops the connection once it is: `cut()` is true); a
 * stall reads nothing more and drops the connection after `limit.stallMs`.
 */
function limitBody(req: IncomingMessage, limit: Limit): { body: Transform; cut: () => boolean } {
  let seen = 0;
  let cut = false;
  const body = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (cut) {
        callback();
        return;
      }
      const room = limit.bytes - seen;
      seen += chunk.length;
      if (room >= chunk.length) {
        callback(null, chunk);
        return;
      }
      if (room > 0) this.push(chunk.subarray(0, room));
      if (limit.then === 'cut') {
        cut = true;
        req.unpipe(body);
        this.push(null);
        callback();
        return;
      }
      // A stall never calls back: the request is not read further. A client that gives up is not
      // seen (nothing reads its socket), so the receiver drops the connection itself in the end.
      setTimeout(() => {
        req.socket.destroy();
        body.destroy(new Error(`stalled for ${limit.stallMs} ms`));
      }, limit.stallMs ?? 0).unref();
    },
  });
  req.pipe(body);
  req.on('error', (error) => body.destroy(error));
  req.on('close', () => {
    if (!req.complete && !cut) body.destroy(new Error('the client went away'));
  });
  return { body, cut: () => cut };
}

function parseTarget(url: string, prefix: string): { repo: string; name: string } | null {
  if (!url.startsWith(`${prefix}/`)) return null;
  const parts = url.slice(prefix.length + 1).split('/');
  if (parts.length !== 2) return null;
  const [repo, name] = parts as [string, string];
  try {
    return { repo: decodeURIComponent(repo), name: decodeURIComponent(name) };
  } catch {
    return { repo, name };
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
