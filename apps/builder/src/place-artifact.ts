import { constants } from 'node:fs';
import { copyFile, lstat, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Moves the regular file `from` (a run's result: the run's directory is
 * removed afterwards) to `to` without copying its bytes, so the artifact is
 * the very inode that was checked. It is copied instead, and the reason
 * returned (null when it was moved), when the two are on different
 * filesystems (`EXDEV`), when the file is not this process's own, or when it
 * has other hard links: the artifact then belongs to the builder and exists
 * once, as the signer requires, and nothing outside the results can change
 * it. Never a hard link: the signer refuses a file with more than one. A
 * file at `to` is replaced (a directory is not: EISDIR). Throws when `from`
 * is not a regular file (a symbolic link is neither moved nor followed).
 */
export async function moveArtifact(from: string, to: string): Promise<string | null> {
  const info = await lstat(from);
  if (!info.isFile()) throw new Error(`${from} is not a regular file`);
  let reason: string | null = null;
  const uid = process.getuid?.();
  if (info.nlink !== 1) reason = `${from} has ${info.nlink} hard links`;
  else if (uid !== undefined && info.uid !== uid) reason = `${from} belongs to uid ${info.uid}, not the builder's ${uid}`;
  await unlink(to).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  if (reason === null) {
    try {
      await rename(from, to);
      return null;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      reason = `${dirname(from)} and ${dirname(to)} are on different filesystems`;
    }
  }
  await copyFile(from, to, constants.COPYFILE_EXCL);
  return reason;
}
