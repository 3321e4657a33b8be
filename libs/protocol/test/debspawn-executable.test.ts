import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveDebspawn, SECURE_PATH } from '@spark/protocol';

describe('resolveDebspawn: the debspawn the build helper runs', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-debspawn-exe-'));
    await writeFile(join(dir, 'spark-test-debspawn'), '#!/bin/sh\n');
    await chmod(join(dir, 'spark-test-debspawn'), 0o755);
    await writeFile(join(dir, 'not-executable'), '#!/bin/sh\n');
    await chmod(join(dir, 'not-executable'), 0o644);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('takes an absolute path to an executable as it is, and refuses one that is not executable or not there', async () => {
    assert.equal(await resolveDebspawn(join(dir, 'spark-test-debspawn')), join(dir, 'spark-test-debspawn'));
    assert.equal(await resolveDebspawn(join(dir, 'not-executable')), null);
    assert.equal(await resolveDebspawn(join(dir, 'missing')), null);
  });

  it("looks a bare name up on sudo's secure_path only, never on the caller's PATH", async () => {
    const found = await resolveDebspawn('sh');
    assert.ok(found !== null && SECURE_PATH.split(':').includes(dirname(found)), `sh resolved to ${found}`);
    const saved = process.env['PATH'];
    process.env['PATH'] = `${dir}:${saved ?? ''}`;
    try {
      assert.equal(await resolveDebspawn('spark-test-debspawn'), null);
    } finally {
      process.env['PATH'] = saved;
    }
  });

  it('never resolves a relative path, even to an executable from the current directory', async () => {
    const saved = process.cwd();
    process.chdir(dirname(dir));
    try {
      assert.equal(await resolveDebspawn(`${basename(dir)}/spark-test-debspawn`), null);
    } finally {
      process.chdir(saved);
    }
  });
});
