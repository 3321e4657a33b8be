import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSafeFileName, parseControlFile, parseFileList, type Manifest } from '@spark/protocol';

/** A control file's `.changes`/`.dud` list cannot be uploaded as it stands; the job fails with this message. */
export class UploadPlanError extends Error {
  override name = 'UploadPlanError';
}

/** Longest control file we read, in bytes (a `.changes` listing thousands of files is far below this). */
const MAX_CONTROL_FILE_BYTES = 4 * 1024 * 1024;

/**
 * The order in which a job's files go to the archive, as dput-ng uploads a
 * control file (the files it lists, then the control file) run for the
 * `.changes` and then the `.dud`, as spark does: the files the `.changes`
 * lists, the `.changes`, the `.dud`'s files not already sent, the `.dud`.
 * Signed control files come last, so the archive never sees one before its
 * payload. Every listed name must be a plain file name among the manifest's
 * files: nothing outside the artifacts dir is ever read.
 */
export async function uploadOrder(manifest: Manifest, artifactsDir: string): Promise<string[]> {
  const known = new Set(manifest.files.map((entry) => entry.name));
  const order: string[] = [];
  const add = (name: string) => {
    if (!order.includes(name)) order.push(name);
  };
  for (const control of [manifest.changes, manifest.dud]) {
    if (control === null) continue;
    for (const name of await listedFiles(join(artifactsDir, control), control)) {
      if (!isSafeFileName(name)) {
        throw new UploadPlanError(`${control} lists ${JSON.stringify(name.slice(0, 80))}, which is not a plain file name`);
      }
      if (!known.has(name)) {
        throw new UploadPlanError(`${control} lists ${name}, which is not in the job's signed manifest`);
      }
      if (name === manifest.changes || name === manifest.dud) {
        throw new UploadPlanError(`${control} lists the control file ${name} as its own payload`);
      }
      add(name);
    }
    add(control);
  }
  return order;
}

async function listedFiles(path: string, control: string): Promise<string[]> {
  const buffer = await readFile(path);
  if (buffer.length > MAX_CONTROL_FILE_BYTES) {
    throw new UploadPlanError(`${control} is ${buffer.length} bytes, more than a control file can be (${MAX_CONTROL_FILE_BYTES})`);
  }
  try {
    const { paragraphs } = parseControlFile(buffer.toString('utf8'));
    const first = paragraphs[0];
    if (!first) throw new Error('no fields');
    return parseFileList(first.get('Files')).map((entry) => entry.name);
  } catch (error) {
    throw new UploadPlanError(`${control} cannot be read as a Debian control file: ${(error as Error).message}`);
  }
}
