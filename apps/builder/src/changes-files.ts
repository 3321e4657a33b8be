import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isSafeFileName, parseControlFile, parseFileList } from '@spark/protocol';
import { digestBuffer, digestFile, type FileDigests } from '@spark/service';
import type { ControlFileSet } from './runner.js';

/**
 * Finds `<source>_<version>_*.changes` in `dir` and checks it: every file it
 * lists has a plain name, exists beside it and matches its size and SHA-256.
 * Each file is read once; the set carries the digests of that read (for the
 * manifest). Returns null when there is no `.changes`; throws naming what is wrong.
 */
export async function readChangesSet(dir: string, source: string, versionNoEpoch: string): Promise<ControlFileSet | null> {
  const prefix = `${source}_${versionNoEpoch}_`;
  const candidates = (await readdir(dir)).filter((name) => name.startsWith(prefix) && name.endsWith('.changes')).sort();
  const name = candidates[0];
  if (name === undefined) return null;
  const content = await readFile(join(dir, name));
  const digests = new Map<string, FileDigests>([[name, digestBuffer(content)]]);
  const paragraph = parseControlFile(content.toString('utf8')).paragraphs[0];
  const entries = parseFileList(paragraph?.get('Checksums-Sha256'));
  if (entries.length === 0) throw new Error(`${name} lists no files`);
  for (const entry of entries) {
    if (!isSafeFileName(entry.name)) throw new Error(`${name} lists ${JSON.stringify(entry.name)}, not a plain file name`);
    const actual = await digestFile(join(dir, entry.name)).catch(() => null);
    if (!actual) throw new Error(`${name} lists ${entry.name}, which debspawn did not leave in ${dir}`);
    if (actual.size !== entry.size || actual.sha256 !== entry.digest.toLowerCase()) {
      throw new Error(`${entry.name} does not match ${name} (size ${actual.size}, SHA-256 ${actual.sha256})`);
    }
    digests.set(entry.name, actual);
  }
  return { dir, name, files: entries.map((entry) => entry.name), digests };
}
