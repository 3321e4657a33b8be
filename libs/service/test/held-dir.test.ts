import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { link, mkdir, mkdtemp, readFile, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { HeldDirError, openHeldDir, openSingleFile } from '../src/held-dir.js';

const run = promisify(execFile);

function refusal(label: string, reason: string) {
  return (error: unknown) => {
    assert.ok(error instanceof HeldDirError, String(error));
    assert.deepEqual([error.label, error.reason], [label, reason]);
    return true;
  };
}

describe('held-open directories and the files in them', () => {
  let root: string;
  before(async () => {
    root = await realpath(await mkdtemp(join(tmpdir(), 'spark-held-dir-')));
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('reaches the files of the directory it opened even after the path is swapped for a link elsewhere', async () => {
    const dir = join(root, 'swap');
    await mkdir(dir);
    await writeFile(join(dir, 'a.deb'), 'the signed bytes');
    const held = await openHeldDir(dir, dir, 'artifacts');
    try {
      const elsewhere = join(root, 'elsewhere');
      await mkdir(elsewhere);
      await writeFile(join(elsewhere, 'a.deb'), 'other bytes');
      await rename(dir, join(root, 'moved'));
      await symlink(elsewhere, dir);
      const { handle } = await openSingleFile(held, 'a.deb');
      try {
        assert.equal((await handle.readFile()).toString(), 'the signed bytes');
      } finally {
        await handle.close();
      }
      assert.equal(await held.whereNow(), join(root, 'moved'));
    } finally {
      await held.close();
    }
  });

  it('refuses a directory that is a link, is missing, or is reached through a link on the way', async () => {
    const real = join(root, 'real');
    await mkdir(real);
    await symlink(real, join(root, 'link'));
    await assert.rejects(
      openHeldDir(join(root, 'link'), join(root, 'link'), 'the job workspace'),
      refusal('the job workspace', 'is not a directory (a symbolic link or a file)'),
    );
    await assert.rejects(openHeldDir(join(root, 'none'), join(root, 'none'), 'artifacts'), refusal('artifacts', 'is missing'));
    await mkdir(join(real, 'artifacts'));
    await assert.rejects(
      openHeldDir(join(root, 'link', 'artifacts'), join(root, 'link', 'artifacts'), 'artifacts'),
      refusal('artifacts', `is at ${join(real, 'artifacts')}, not at ${join(root, 'link', 'artifacts')}`),
    );
  });

  it('opens a regular file with one link, and refuses a symbolic link, a hard link, a FIFO, a directory and a missing name', async () => {
    const dir = join(root, 'files');
    await mkdir(dir);
    await writeFile(join(dir, 'good.deb'), 'ok');
    await writeFile(join(root, 'secret'), 'the uploader password');
    await symlink(join(root, 'secret'), join(dir, 'link.deb'));
    await writeFile(join(dir, 'twice.deb'), 'x');
    await link(join(dir, 'twice.deb'), join(root, 'twice-elsewhere'));
    await run('mkfifo', [join(dir, 'fifo.deb')]);
    await mkdir(join(dir, 'dir.deb'));
    const held = await openHeldDir(dir, dir, 'artifacts');
    try {
      const good = await openSingleFile(held, 'good.deb');
      assert.equal(good.stats.size, 2);
      await good.handle.close();
      await assert.rejects(openSingleFile(held, 'link.deb'), refusal('link.deb', 'is a symbolic link'));
      await assert.rejects(openSingleFile(held, 'twice.deb'), refusal('twice.deb', 'has 2 hard links'));
      await assert.rejects(openSingleFile(held, 'fifo.deb'), refusal('fifo.deb', 'is a FIFO, not a regular file'));
      await assert.rejects(openSingleFile(held, 'dir.deb'), refusal('dir.deb', 'is a directory, not a regular file'));
      await assert.rejects(openSingleFile(held, 'gone.deb'), refusal('gone.deb', 'is missing'));
      assert.equal(await readFile(join(root, 'secret'), 'utf8'), 'the uploader password');
    } finally {
      await held.close();
    }
  });
});
