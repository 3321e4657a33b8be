import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

async function hashFile(hash: Hash, path: string): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

/**
 * Adds the tree `dir` to `hash`: every entry's path, kind and executable bit,
 * a file's bytes and a link's target, in a fixed order. The top-level `.git`
 * is left out: two clones of one commit differ there byte for byte, and the
 * recipe's scripts are what the prepared image depends on.
 */
async function hashTree(hash: Hash, dir: string, prefix: string): Promise<void> {
  for (const name of (await readdir(dir)).sort()) {
    if (prefix === '' && name === '.git') continue;
    const path = join(dir, name);
    const rel = `${prefix}${name}`;
    const info = await lstat(path);
    if (info.isSymbolicLink()) {
      hash.update(`link\0${rel}\0${await readlink(path)}\0`);
    } else if (info.isDirectory()) {
      hash.update(`dir\0${rel}\0`);
      await hashTree(hash, path, `${rel}/`);
    } else if (info.isFile()) {
      hash.update(`file\0${rel}\0${(info.mode & 0o111) !== 0 ? 'x' : '-'}\0${info.size}\0`);
      await hashFile(hash, path);
    } else {
      hash.update(`other\0${rel}\0`);
    }
  }
}

/**
 * The key under which debspawn keeps the image prepared for a recipe: the
 * builder's key (`<suite>-mkimage-<format>-<environment>-<style>`), the
 * architecture, and a digest of the recipe checkout and the prepare script as
 * the helper copied them. A job whose recipe differs in any byte gets its own
 * prepared image, never another job's; the same recipe finds its own again.
 */
export async function imageCacheKey(builderKey: string, arch: string, recipeDir: string, prepareScript: string): Promise<string> {
  const hash = createHash('sha256');
  hash.update(`${builderKey}\0${arch}\0`);
  await hashTree(hash, recipeDir, '');
  hash.update('prepare\0');
  await hashFile(hash, prepareScript);
  return `${builderKey}-${arch}-${hash.digest('hex').slice(0, 32)}`;
}
