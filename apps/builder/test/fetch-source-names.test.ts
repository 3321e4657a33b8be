import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { fetchSource, isPlainEntryName, SourceFetchError } from '../src/fetch-source.js';
import type { JobLog } from '../src/job-log.js';
import { serveDirectory } from './fixtures.js';

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** A JobLog that keeps the builder's notes. */
function noteLog(): JobLog & { notes: string[] } {
  const notes: string[] = [];
  return {
    path: '/dev/null',
    notes,
    note: (message) => notes.push(message),
    openOutput: () => Promise.reject(new Error('fetchSource runs no command')),
    onLine: () => () => undefined,
    takeExcerpt: () => null,
    onRefusal: () => () => undefined,
    close: () => Promise.resolve(),
  };
}

describe('fetchSource refuses what is not a plain download next to the .dsc', () => {
  let tmp: string;
  let archive: string;
  let served: { url: string; close(): Promise<void> };
  const tarball = Buffer.from('not really a tarball\n');

  /** Writes a `.dsc` listing `names` (each with the tarball's digest); returns its URL path and SHA-256. */
  async function dsc(file: string, names: string[]): Promise<string> {
    const text = [
      'Format: 3.0 (native)',
      'Source: hello',
      'Version: 1.0',
      'Checksums-Sha256:',
      ...names.map((name) => ` ${sha256(tarball)} ${tarball.length} ${name}`),
      '',
    ].join('\n');
    await writeFile(join(archive, file), text);
    return sha256(text);
  }

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'spark-fetch-'));
    archive = join(tmp, 'archive');
    await mkdir(archive);
    await writeFile(join(archive, 'hello_1.0.tar.xz'), tarball);
    served = await serveDirectory(archive);
  });

  after(async () => {
    await served.close();
    await rm(tmp, { recursive: true, force: true });
  });

  async function fetchInto(url: string, digest: string, options: { allowFileUrls?: boolean } = {}) {
    const dir = await mkdtemp(join(tmp, 'source-'));
    const result = await fetchSource(url, digest, dir, noteLog(), new AbortController().signal, {
      connectMs: 10_000,
      idleMs: 10_000,
      ...options,
    });
    return { result, dir };
  }

  it('fetches an http .dsc and the files next to it', async () => {
    const digest = await dsc('hello_1.0.dsc', ['hello_1.0.tar.xz']);
    const { result, dir } = await fetchInto(`${served.url}/hello_1.0.dsc`, digest);
    assert.deepEqual([result.source, result.version], ['hello', '1.0']);
    assert.deepEqual((await readdir(dir)).sort(), ['hello_1.0.dsc', 'hello_1.0.tar.xz']);
    assert.deepEqual(await readFile(join(dir, 'hello_1.0.tar.xz')), tarball);
  });

  it('refuses file:// unless the development setting allows it', async () => {
    const digest = await dsc('hello_1.0.dsc', ['hello_1.0.tar.xz']);
    const url = pathToFileURL(join(archive, 'hello_1.0.dsc')).href;
    await assert.rejects(fetchInto(url, digest), (error: Error) => {
      assert.ok(error instanceof SourceFetchError);
      assert.equal(
        error.message,
        `dsc_url ${url}: only http and https sources are fetched (file:// is for development: [builder] AllowFileUrls)`,
      );
      return true;
    });
    const { result } = await fetchInto(url, digest, { allowFileUrls: true });
    assert.equal(result.source, 'hello');
  });

  it('refuses other schemes', async () => {
    await assert.rejects(fetchInto('ftp://example.org/hello_1.0.dsc', '0'.repeat(64)), /only http and https sources are fetched$/);
  });

  for (const name of ['https:evil.example', 'http:hello_1.0.tar.xz', '..', 'a/../hello_1.0.tar.xz', '/etc/passwd', 'hello..tar.xz']) {
    it(`refuses a .dsc entry named ${JSON.stringify(name)}, downloading nothing of it`, async () => {
      const digest = await dsc('bad.dsc', ['hello_1.0.tar.xz', name]);
      const attempt = fetchInto(`${served.url}/bad.dsc`, digest);
      await assert.rejects(attempt, (error: Error) => {
        assert.ok(error instanceof SourceFetchError);
        assert.match(error.message, /^bad\.dsc lists .*, which is not a plain Debian file name$/);
        return true;
      });
    });
  }

  it('tells plain entry names from the rest', () => {
    assert.equal(isPlainEntryName('hello_1.0-1.debian.tar.xz'), true);
    assert.equal(isPlainEntryName('hello_1.0+dfsg~rc1.orig.tar.gz'), true);
    for (const name of ['https:evil.example', 'a:b', 'a/b', '..', 'x..y', '']) assert.equal(isPlainEntryName(name), false, name);
  });
});
