import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { dscFileName, isSafeFileName, MAX_DSC_BYTES, parseControlFile, parseFileList } from '@spark/protocol';
import type { JobLog } from './job-log.js';

/** The source package was not fetched as the job describes it: the build must not run. */
export class SourceFetchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SourceFetchError';
  }
}

/** How long a download may take to connect and to go without data. */
export interface DownloadTimeouts {
  /** ms to establish the connection (`[builder] DownloadConnectTimeout`). */
  connectMs: number;
  /** ms without receiving a byte, waiting for the response or inside the body (`[builder] DownloadIdleTimeout`). */
  idleMs: number;
}

/** Redirects followed per file, as a browser would (fetch's default is 20; an archive needs one or two). */
const MAX_REDIRECTS = 5;

/** A fetched, verified source package. */
export interface FetchedSource {
  /** Absolute path of the `.dsc`. */
  dsc: string;
  /** `Source` and `Version` of the `.dsc`. */
  source: string;
  version: string;
}

/** How {@link fetchSource} may download: its timeouts, and whether `file://` is allowed. */
export interface FetchOptions extends DownloadTimeouts {
  /** Development only (`[builder] AllowFileUrls`): accept `file://` URLs; otherwise only http(s). */
  allowFileUrls?: boolean;
}

/**
 * A `.dsc` entry is a file next to the `.dsc`: a plain Debian file name, so
 * nothing that could be read as a scheme (`https:evil.example`), a path or a
 * parent (`..`) when resolved against the `.dsc`'s URL.
 */
export function isPlainEntryName(name: string): boolean {
  return isSafeFileName(name) && !name.includes(':') && !name.includes('/') && !name.includes('..');
}

/**
 * Downloads the `.dsc` at `dscUrl` and every file it lists (next to it) into
 * `dir`, as `dget -u -d` does, but verified: the `.dsc` against the job's
 * SHA-256, each file's size and SHA-256 against the `.dsc`'s
 * `Checksums-Sha256`. Only http(s) URLs, `file://` only with
 * `allowFileUrls`; entries must be plain file names ({@link isPlainEntryName}).
 */
export async function fetchSource(
  dscUrl: string,
  sha256: string,
  dir: string,
  log: JobLog,
  signal: AbortSignal,
  options: FetchOptions,
): Promise<FetchedSource> {
  const url = new URL(dscUrl);
  if (url.protocol !== 'http:' && url.protocol !== 'https:' && !(url.protocol === 'file:' && options.allowFileUrls)) {
    throw new SourceFetchError(
      `dsc_url ${dscUrl}: only http and https sources are fetched${url.protocol === 'file:' ? ' (file:// is for development: [builder] AllowFileUrls)' : ''}`,
    );
  }
  const dscName = dscFileName(dscUrl);
  if (dscName === null) {
    throw new SourceFetchError(`dsc_url ${dscUrl} does not end in a plain .dsc file name`);
  }
  const dscPath = join(dir, dscName);
  log.note(`downloading ${url.href}`);
  const dscDigest = await download(url, dscPath, MAX_DSC_BYTES, signal, options);
  if (dscDigest.sha256 !== sha256) {
    await rm(dscPath, { force: true });
    throw new SourceFetchError(`${dscName}: SHA-256 is ${dscDigest.sha256}, the job expects ${sha256}`);
  }
  const text = await readFile(dscPath, 'utf8');
  let source: string | undefined;
  let version: string | undefined;
  let entries;
  try {
    const paragraph = parseControlFile(text).paragraphs[0];
    source = paragraph?.get('Source');
    version = paragraph?.get('Version');
    entries = parseFileList(paragraph?.get('Checksums-Sha256'));
  } catch (error) {
    throw new SourceFetchError(`${dscName} is not a readable .dsc: ${(error as Error).message}`);
  }
  if (!source || !version) {
    throw new SourceFetchError(`${dscName} lacks a Source or Version field`);
  }
  if (entries.length === 0) {
    throw new SourceFetchError(`${dscName} lists no files in Checksums-Sha256`);
  }
  for (const entry of entries) {
    if (!isPlainEntryName(entry.name) || entry.name === dscName) {
      throw new SourceFetchError(`${dscName} lists ${JSON.stringify(entry.name)}, which is not a plain Debian file name`);
    }
  }
  for (const entry of entries) {
    const fileUrl = new URL(entry.name, url);
    const path = join(dir, entry.name);
    log.note(`downloading ${fileUrl.href} (${entry.size} bytes)`);
    const digest = await download(fileUrl, path, entry.size, signal, options);
    if (digest.size !== entry.size || digest.sha256 !== entry.digest.toLowerCase()) {
      await rm(path, { force: true });
      throw new SourceFetchError(
        `${entry.name}: got ${digest.size} bytes with SHA-256 ${digest.sha256}; ${dscName} says ${entry.size} bytes with SHA-256 ${entry.digest}`,
      );
    }
  }
  log.note(`verified ${dscName} and its ${entries.length} file(s)`);
  return { dsc: dscPath, source, version };
}

async function download(
  url: URL,
  path: string,
  maxBytes: number,
  signal: AbortSignal,
  timeouts: DownloadTimeouts,
): Promise<{ size: number; sha256: string }> {
  let body: Readable;
  let received = () => {};
  if (url.protocol === 'file:') {
    body = createReadStream(fileURLToPath(url));
  } else if (url.protocol === 'http:' || url.protocol === 'https:') {
    const response = await openHttp(url, timeouts, signal, MAX_REDIRECTS);
    body = response.body;
    received = () => response.received();
  } else {
    throw new SourceFetchError(`cannot download ${url.href}: unsupported protocol`);
  }
  const hash = createHash('sha256');
  let size = 0;
  try {
    await pipeline(
      body,
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          received();
          size += chunk.length;
          // One byte over is enough to know the file is not the one described.
          if (size > maxBytes + 1) throw new SourceFetchError(`${url.href} is larger than the expected ${maxBytes} bytes`);
          hash.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(path, { mode: 0o644 }),
      { signal },
    );
  } catch (error) {
    await rm(path, { force: true });
    if (error instanceof SourceFetchError) throw error;
    throw new SourceFetchError(`cannot download ${url.href}: ${(error as Error).message}`);
  }
  return { size, sha256: hash.digest('hex') };
}

/** A response body being downloaded; `received()` is called per chunk read (it re-arms the idle timeout). */
interface HttpBody {
  body: IncomingMessage;
  received(): void;
}

/**
 * GETs `url` (following redirects) and resolves with the response body of a
 * 2xx answer. A connection not made within `connectMs`, or no byte received
 * for `idleMs` — before the response or anywhere in the body — destroys the
 * request with an error naming the URL and the time waited.
 */
function openHttp(url: URL, timeouts: DownloadTimeouts, signal: AbortSignal, redirectsLeft: number): Promise<HttpBody> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, {
      method: 'GET',
      // A fresh connection per file: a pooled socket never reports 'connect', so its connect time could not be bounded.
      agent: false,
      signal,
      headers: { 'user-agent': 'spark-builder' },
    });
    let timer: NodeJS.Timeout | undefined;
    let body: IncomingMessage | null = null;
    // Inside the body, the error must reach the pipeline reading it as it is (a destroyed request would say only "aborted").
    const fail = (message: string) => (body ?? request).destroy(new SourceFetchError(`cannot download ${url.href}: ${message}`));
    const armIdle = () => {
      clearTimeout(timer);
      timer = setTimeout(() => fail(`no data received for ${seconds(timeouts.idleMs)} s (DownloadIdleTimeout)`), timeouts.idleMs);
    };
    timer = setTimeout(
      () => fail(`no connection to ${url.host} within ${seconds(timeouts.connectMs)} s (DownloadConnectTimeout)`),
      timeouts.connectMs,
    );
    request.once('socket', (socket) => {
      if (!socket.connecting) armIdle();
      else socket.once('connect', armIdle);
    });
    request.once('close', () => clearTimeout(timer));
    request.once('error', (error) => {
      clearTimeout(timer);
      reject(error instanceof SourceFetchError ? error : new SourceFetchError(`cannot download ${url.href}: ${error.message}`));
    });
    request.once('response', (response) => {
      armIdle();
      response.once('end', () => clearTimeout(timer));
      // The body's errors (our idle timeout among them) surface through the pipeline reading it.
      response.once('error', () => clearTimeout(timer));
      const status = response.statusCode ?? 0;
      const location = response.headers.location;
      if (status >= 300 && status < 400 && location !== undefined) {
        response.resume();
        clearTimeout(timer);
        if (redirectsLeft === 0) {
          reject(new SourceFetchError(`cannot download ${url.href}: too many redirects`));
          return;
        }
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          reject(new SourceFetchError(`cannot download ${url.href}: redirected to an invalid URL ${JSON.stringify(location)}`));
          return;
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          reject(new SourceFetchError(`cannot download ${url.href}: redirected to ${next.protocol} URL`));
          return;
        }
        openHttp(next, timeouts, signal, redirectsLeft - 1).then(resolve, reject);
        return;
      }
      if (status < 200 || status >= 300) {
        response.resume();
        clearTimeout(timer);
        reject(new SourceFetchError(`cannot download ${url.href}: HTTP ${status} ${response.statusMessage ?? ''}`.trimEnd()));
        return;
      }
      body = response;
      resolve({ body: response, received: armIdle });
    });
    request.end();
  });
}

function seconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}
