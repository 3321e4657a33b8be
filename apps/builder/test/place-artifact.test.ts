import assert from 'node:assert/strict';
import { chown, link, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { moveArtifact } from '../src/place-artifact.js';
import { mountTinyDisk } from '@spark/testing';

describe('moveArtifact: results are moved into the artifacts, copied only when they must be', () => {
  let root: string;
  let other: string;
  let unmount: (() => Promise<void>) | null = null;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'spark-place-'));
    // A filesystem of its own (a small tmpfs), for EXDEV.
    other = join(root, 'other-fs');
    await mkdir(other);
    unmount = await mountTinyDisk(other, 4 * 1024 * 1024);
  });
  after(async () => {
    await unmount?.();
    if (root) await rm(root, { recursive: true, force: true });
  });

  const file = async (name: string, text = `content of ${name}\n`) => {
    const path = join(root, name);
    await writeFile(path, text);
    return path;
  };

  it('moves a result: the artifact is the same inode, the result is gone', async () => {
    const from = await file('moved.deb');
    const { ino } = await stat(from);
    const to = join(root, 'moved-artifact.deb');
    assert.equal(await moveArtifact(from, to), null);
    assert.equal((await stat(to)).ino, ino);
    await assert.rejects(stat(from), { code: 'ENOENT' });
  });

  it('replaces a file at the artifact name, and refuses to replace a directory', async () => {
    const from = await file('replacing.deb');
    const to = await file('replaced.deb', 'an older file at the name\n');
    assert.equal(await moveArtifact(from, to), null);
    assert.equal(await readFile(to, 'utf8'), 'content of replacing.deb\n');
    const blocked = join(root, 'blocked.deb');
    await mkdir(blocked);
    await assert.rejects(moveArtifact(await file('blocking.deb'), blocked), { code: 'EISDIR' });
  });

  it('copies across filesystems (EXDEV) and says so', async () => {
    const from = join(other, 'across.buildinfo');
    await writeFile(from, 'across\n');
    const to = join(root, 'across.buildinfo');
    assert.equal(await moveArtifact(from, to), `${other} and ${root} are on different filesystems`);
    assert.equal(await readFile(to, 'utf8'), 'across\n');
    assert.notEqual((await stat(to)).dev, (await stat(from)).dev);
  });

  it('copies a result with other hard links rather than share its inode with a file outside the results', async () => {
    const from = await file('linked.changes');
    await link(from, join(root, 'elsewhere'));
    const to = join(root, 'linked-artifact.changes');
    assert.equal(await moveArtifact(from, to), `${from} has 2 hard links`);
    assert.notEqual((await stat(to)).ino, (await stat(from)).ino);
    assert.equal((await stat(to)).nlink, 1);
    assert.equal(await readFile(to, 'utf8'), 'content of linked.changes\n');
  });

  it(
    'copies a result that is not the builder’s own, so the artifact belongs to the builder',
    { skip: process.getuid?.() !== 0 && 'needs root to chown' },
    async () => {
      const from = await file('foreign.deb');
      await chown(from, 65534, 65534);
      const to = join(root, 'foreign-artifact.deb');
      assert.equal(await moveArtifact(from, to), `${from} belongs to uid 65534, not the builder's 0`);
      assert.equal((await stat(to)).uid, 0);
    },
  );

  it('refuses what is not a regular file: a symbolic link is neither moved nor followed', async () => {
    const target = await file('secret');
    const from = join(root, 'planted.deb');
    await symlink(target, from);
    await assert.rejects(moveArtifact(from, join(root, 'planted-artifact.deb')), { message: `${from} is not a regular file` });
    await assert.rejects(stat(join(root, 'planted-artifact.deb')), { code: 'ENOENT' });
  });
});
