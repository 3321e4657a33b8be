import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { debspawnVersionOnce } from '../src/debspawn-version.js';

describe('debspawnVersionOnce: the version the .dud names as its generator', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-debspawn-version-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('asks `debspawn --version` once and remembers the answer', async () => {
    const debspawn = join(dir, 'debspawn');
    const calls = join(dir, 'calls');
    await writeFile(debspawn, `#!/bin/sh\necho "$@" >>${calls}\necho '0.6.4'\n`);
    await chmod(debspawn, 0o755);
    const version = debspawnVersionOnce({ debspawn, useSudo: false, pathPrefix: null });
    assert.equal(await version(), '0.6.4');
    assert.equal(await version(), '0.6.4');
    assert.equal(await readFile(calls, 'utf8'), '--version\n');
  });

  it('says unknown when debspawn cannot be run or fails', async () => {
    assert.equal(await debspawnVersionOnce({ debspawn: join(dir, 'missing'), useSudo: false, pathPrefix: null })(), 'unknown');
    const failing = join(dir, 'failing');
    await writeFile(failing, '#!/bin/sh\necho 1.0\nexit 3\n');
    await chmod(failing, 0o755);
    assert.equal(await debspawnVersionOnce({ debspawn: failing, useSudo: false, pathPrefix: null })(), 'unknown');
  });
});
