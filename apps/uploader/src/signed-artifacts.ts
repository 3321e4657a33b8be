import { createHash } from 'node:crypto';
import { realpath, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { jobWorkspaceDir, type JobRound } from '@spark/protocol';
import { HeldDirError, openHeldDir, openSingleFile, type HeldDir } from '@spark/service';

/**
 * A file of the job is not what the signer signed (its bytes, its size, a link
 * or a FIFO where the file was). Only a builder that changed its workspace
 * after signing gets here, so no later try can mend it: the round is reported
 * failed at once with this message, which names the file and what differs.
 */
export class NotAsSignedError extends Error {
  override readonly name = 'NotAsSignedError';
}

/**
 * A file to upload as the signer signed it: its size and SHA-256, and who
 * vouches for them, for messages (`the signed hello_1.0-1_amd64.changes`, or
 * {@link SIGNER_MANIFEST} for the control files themselves).
 */
export interface SignedFile {
  name: string;
  size: number;
  sha256: string;
  signedBy: string;
}

/** How messages name the `upload` job's manifest: the signer wrote it, the builder cannot (see upload-order.ts). */
export const SIGNER_MANIFEST = "the signer's manifest";

/**
 * Opens the round's workspace and its `artifacts` dir once, as the signer
 * does: both must be directories at their canonical place under
 * `workspacesDir`, reached without a link; every file is then read through
 * the held `artifacts` dir, so a directory swapped afterwards reaches nothing.
 */
export async function openArtifactsDir(workspacesDir: string, round: JobRound): Promise<HeldDir> {
  try {
    const expected = jobWorkspaceDir(await realpath(workspacesDir), round);
    const workspace = await openHeldDir(expected, expected, 'the job workspace');
    try {
      return await openHeldDir(workspace.at('artifacts'), join(expected, 'artifacts'), "the job's artifacts dir");
    } finally {
      await workspace.close();
    }
  } catch (error) {
    if (error instanceof HeldDirError) throw new NotAsSignedError(error.message);
    throw error;
  }
}

/**
 * Opens `file` in `dir` as it must be to be uploaded: not through a link,
 * a regular file with one link (openSingleFile) and the signed size. Throws
 * {@link NotAsSignedError} naming the file and what is wrong. The caller
 * closes the handle.
 */
export async function openSignedFile(dir: HeldDir, file: SignedFile): Promise<FileHandle> {
  let opened;
  try {
    opened = await openSingleFile(dir, file.name);
  } catch (error) {
    if (error instanceof HeldDirError)
      throw new NotAsSignedError(`${error.label}: ${error.reason}; only the file that was signed is uploaded`);
    throw error;
  }
  if (opened.stats.size !== file.size) {
    await opened.handle.close();
    throw new NotAsSignedError(`${file.name}: is ${opened.stats.size} bytes, ${file.signedBy} says ${file.size}`);
  }
  return opened.handle;
}

/**
 * Reads a control file whole (at most `maxBytes`) through {@link openSignedFile}
 * and checks its SHA-256; returns the bytes that were checked.
 */
export async function readSignedFile(dir: HeldDir, file: SignedFile, maxBytes: number): Promise<Buffer> {
  if (file.size > maxBytes) {
    throw new NotAsSignedError(`${file.name}: ${file.signedBy} says ${file.size} bytes, more than a control file can be (${maxBytes})`);
  }
  const handle = await openSignedFile(dir, file);
  try {
    const content = await handle.readFile();
    const sha256 = createHash('sha256').update(content).digest('hex');
    if (content.length !== file.size) {
      throw new NotAsSignedError(`${file.name}: changed while it was read (${content.length} bytes), ${file.signedBy} says ${file.size}`);
    }
    if (sha256 !== file.sha256) throw new NotAsSignedError(`${file.name}: SHA-256 is ${sha256}, ${file.signedBy} says ${file.sha256}`);
    return content;
  } finally {
    await handle.close();
  }
}
