import { constants, type Stats } from 'node:fs';
import { open, readlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A directory or file of a job's workspace that cannot be used as it is: `label`
 * names it, `reason` says why ("is a symbolic link", "has 2 hard links").
 */
export class HeldDirError extends Error {
  override readonly name = 'HeldDirError';

  constructor(
    /** The directory's label or the file's name. */
    readonly label: string,
    /** Why, in words for the operator. */
    readonly reason: string,
  ) {
    super(`${label} ${reason}`);
  }
}

/**
 * A directory held open: every later step reaches its entries through
 * {@link HeldDir.at}, which names an entry of the directory that was opened
 * and checked (`/proc/self/fd/<fd>/<name>`, resolved by the kernel from the
 * open directory, as `openat` would), never through the directory's path
 * again. A directory swapped for a link, or moved, after it was opened
 * changes nothing. The workspace belongs to the builder, which runs untrusted
 * code (docs/architecture.md, "Trust boundary").
 */
export interface HeldDir {
  /** Where the directory was when it was opened (canonical). */
  readonly path: string;
  /** A path naming `name` inside the opened directory. */
  at(name: string): string;
  /** Where the opened directory is now: {@link path} unless it was moved (`(unknown)` when that cannot be read). */
  whereNow(): Promise<string>;
  close(): Promise<void>;
}

function fdPath(handle: FileHandle): string {
  return `/proc/self/fd/${handle.fd}`;
}

/**
 * Opens the directory `path` without following a link in its last component
 * and checks that what was opened is a directory whose canonical path is
 * `expected` (read back from `/proc/self/fd`), so no link anywhere on the way
 * led elsewhere. Throws a {@link HeldDirError} labelled `label` otherwise
 * (reason `is not a directory (a symbolic link or a file)`, `is missing`,
 * `cannot be opened: <errno code>`, `is not a directory`, `is at <path>, not
 * at <expected>`).
 */
export async function openHeldDir(path: string, expected: string, label: string): Promise<HeldDir> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') throw new HeldDirError(label, 'is not a directory (a symbolic link or a file)');
    if (code === 'ENOENT') throw new HeldDirError(label, 'is missing');
    throw new HeldDirError(label, `cannot be opened: ${code ?? String(error)}`);
  }
  const dir: HeldDir = {
    path: expected,
    at: (name) => join(fdPath(handle), name),
    whereNow: () => readlink(fdPath(handle)).catch(() => '(unknown)'),
    close: () => handle.close(),
  };
  try {
    if (!(await handle.stat()).isDirectory()) throw new HeldDirError(label, 'is not a directory');
    const now = await dir.whereNow();
    if (now !== expected) throw new HeldDirError(label, `is at ${now}, not at ${expected}`);
  } catch (error) {
    await handle.close();
    throw error;
  }
  return dir;
}

/** What kind of file `stats` describes, for messages: `a directory`, `a FIFO`, … */
export function fileKind(stats: Stats): string {
  if (stats.isFile()) return 'a regular file';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  return 'a file of unknown kind';
}

/** A file of a held directory, opened and checked as {@link openSingleFile} describes. */
export interface HeldFile {
  handle: FileHandle;
  /** fstat of the handle when it was opened. */
  stats: Stats;
}

/**
 * Opens `name` in `dir` for reading as a file that exists once, there: never
 * through a symbolic link (`O_NOFOLLOW`), never blocking on a FIFO
 * (`O_NONBLOCK`), and checked as opened (`fstat`), not by its path: a regular
 * file with exactly one link (a hard link would be a file that also lives
 * elsewhere, say someone else's secret). Throws a {@link HeldDirError} naming
 * the file otherwise (`is missing`, `is a symbolic link`, `is a FIFO, not a
 * regular file`, `has 2 hard links`). The caller closes the handle.
 */
export async function openSingleFile(dir: HeldDir, name: string): Promise<HeldFile> {
  let handle: FileHandle;
  try {
    handle = await open(dir.at(name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new HeldDirError(name, 'is missing');
    if (code === 'ELOOP') throw new HeldDirError(name, 'is a symbolic link');
    throw new HeldDirError(name, `cannot be opened: ${code ?? String(error)}`);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new HeldDirError(name, `is ${fileKind(stats)}, not a regular file`);
    if (stats.nlink !== 1) throw new HeldDirError(name, `has ${stats.nlink} hard links`);
    return { handle, stats };
  } catch (error) {
    await handle.close();
    throw error;
  }
}
