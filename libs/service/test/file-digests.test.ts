import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { digestBuffer, digestFile } from '../src/file-digests.js';

const run = promisify(execFile);

describe('file digests: size, MD5, SHA-1 and SHA-256 in one read', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-digests-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('match md5sum, sha1sum and sha256sum, for an empty file, one of a chunk and a byte, and one of several chunks', async () => {
    for (const [name, size] of [
      ['empty', 0],
      ['chunk-and-a-byte', 1024 * 1024 + 1],
      ['several-chunks', 5 * 1024 * 1024 + 12345],
    ] as const) {
      const path = join(dir, name);
      await writeFile(path, randomBytes(size));
      const digests = await digestFile(path);
      const tool = async (command: string) => (await run(command, ['--', path])).stdout.split(' ')[0];
      assert.deepEqual(digests, { size, md5: await tool('md5sum'), sha1: await tool('sha1sum'), sha256: await tool('sha256sum') }, name);
      assert.deepEqual(digestBuffer(await readFile(path)), digests, name);
    }
  });
});
