import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** Size and digests of one file, read once. */
export interface FileDigests {
  size: number;
  md5: string;
  sha1: string;
  sha256: string;
}

/** Reads `path` once and returns its size, MD5, SHA-1 and SHA-256 (hex). */
export async function fileDigests(path: string): Promise<FileDigests> {
  const md5 = createHash('md5');
  const sha1 = createHash('sha1');
  const sha256 = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    size += chunk.length;
    md5.update(chunk);
    sha1.update(chunk);
    sha256.update(chunk);
  }
  return { size, md5: md5.digest('hex'), sha1: sha1.digest('hex'), sha256: sha256.digest('hex') };
}
