import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';

/** Size and the digests Debian control files list (`Files`, `Checksums-Sha1`, `Checksums-Sha256`), lowercase hex. */
export interface FileDigests {
  /** Bytes. */
  size: number;
  md5: string;
  sha1: string;
  sha256: string;
}

/** Digests a stream chunk by chunk, so a 2 GiB `.deb` is never held in memory. */
export async function digestStream(stream: Readable): Promise<FileDigests> {
  const md5 = createHash('md5');
  const sha1 = createHash('sha1');
  const sha256 = createHash('sha256');
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    md5.update(chunk);
    sha1.update(chunk);
    sha256.update(chunk);
    size += chunk.length;
  }
  return { size, md5: md5.digest('hex'), sha1: sha1.digest('hex'), sha256: sha256.digest('hex') };
}

/** Reads the file at `path` once, in 1 MiB chunks, for its size and digests. */
export function digestFile(path: string): Promise<FileDigests> {
  return digestStream(createReadStream(path, { highWaterMark: 1024 * 1024 }));
}

/** Digests of bytes already in memory (a control file). */
export function digestBuffer(data: Uint8Array): FileDigests {
  const hex = (algorithm: string) => createHash(algorithm).update(data).digest('hex');
  return { size: data.length, md5: hex('md5'), sha1: hex('sha1'), sha256: hex('sha256') };
}
