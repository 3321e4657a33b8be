import { constants } from 'node:fs';
import { lstat, open, realpath, type FileHandle } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { jobArtifactsDir, type JobRound, type Manifest, type ManifestEntry } from '@spark/protocol';
import { ArtifactError } from './artifact-error.js';
import { digestBuffer, digestStream, type FileDigests } from '@spark/service';

/** Control files are read whole (they are signed from memory); anything larger is not a control file. */
export const MAX_CONTROL_FILE_BYTES = 16 * 1024 * 1024;

/** Read size for hashing: larger than the 64 KiB default, fewer round trips per GiB. */
const READ_CHUNK_BYTES = 1024 * 1024;

const CONTROL_SUFFIXES = ['.changes', '.dud', '.dsc', '.buildinfo'];

/** A manifest file that exists in the artifacts dir with the manifest's size and SHA-256. */
export interface VerifiedArtifact {
  entry: ManifestEntry;
  digests: FileDigests;
  /** A control file's bytes as verified, so what is signed is exactly what was checked. */
  content: Buffer | null;
}

/** The job's artifacts dir (resolved) and its verified files by name. */
export interface VerifiedArtifacts {
  dir: string;
  /** Where the control files are kept as the builder made them once they are signed ({@link ORIGINALS_DIR}). */
  originalsDir: string;
  files: Map<string, VerifiedArtifact>;
}

/**
 * Directory beside `artifacts` in the job's workspace where the signer keeps
 * each control file as it was before signing, so that a retried job (say, the
 * hand-off to `upload` failed) verifies and signs the same bytes again.
 */
export const ORIGINALS_DIR = 'signer-originals';

/** True for the files read whole and possibly signed (`.changes`, `.dud`, `.dsc`, `.buildinfo`). */
export function isControlFileName(name: string): boolean {
  return CONTROL_SUFFIXES.some((suffix) => name.endsWith(suffix));
}

async function resolveArtifactsDir(workspacesDir: string, round: JobRound): Promise<string> {
  const dir = jobArtifactsDir(workspacesDir, round);
  let root: string;
  let real: string;
  try {
    root = await realpath(workspacesDir);
    real = await realpath(dir);
  } catch (error) {
    throw new ArtifactError('artifacts', `cannot open ${dir}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  if (!real.startsWith(root + sep)) {
    throw new ArtifactError('artifacts', `${dir} resolves to ${real}, outside the workspaces dir ${root}`);
  }
  return real;
}

async function openNoFollow(path: string, name: string): Promise<FileHandle> {
  try {
    return await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ArtifactError(name, 'missing from the job workspace');
    if (code === 'ELOOP') throw new ArtifactError(name, 'is a symbolic link; only regular files in the workspace are signed');
    throw new ArtifactError(name, `cannot open: ${code ?? String(error)}`);
  }
}

async function verifyEntry(dir: string, originalsDir: string, entry: ManifestEntry): Promise<VerifiedArtifact> {
  try {
    return await verifyFile(join(dir, entry.name), entry);
  } catch (error) {
    if (!(error instanceof ArtifactError) || !isControlFileName(entry.name) || !(await isPlainDir(originalsDir))) throw error;
    const kept = await verifyFile(join(originalsDir, entry.name), entry).catch(() => null);
    if (kept) return kept;
    throw error;
  }
}

async function isPlainDir(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function verifyFile(path: string, entry: ManifestEntry): Promise<VerifiedArtifact> {
  const handle = await openNoFollow(path, entry.name);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ArtifactError(entry.name, 'is not a regular file');
    if (info.size !== entry.size) {
      throw new ArtifactError(entry.name, `is ${info.size} bytes, the manifest says ${entry.size}`);
    }
    const control = isControlFileName(entry.name);
    if (control && info.size > MAX_CONTROL_FILE_BYTES) {
      throw new ArtifactError(entry.name, `is ${info.size} bytes, more than a control file may be (${MAX_CONTROL_FILE_BYTES})`);
    }
    const content = control ? await handle.readFile() : null;
    const digests = content
      ? digestBuffer(content)
      : await digestStream(handle.createReadStream({ autoClose: false, highWaterMark: READ_CHUNK_BYTES }));
    if (digests.size !== entry.size) {
      throw new ArtifactError(entry.name, `changed while it was read (${digests.size} bytes read, the manifest says ${entry.size})`);
    }
    if (digests.sha256 !== entry.sha256) {
      throw new ArtifactError(entry.name, `SHA-256 is ${digests.sha256}, the manifest says ${entry.sha256}`);
    }
    return { entry, digests, content };
  } finally {
    await handle.close();
  }
}

/**
 * Checks every manifest file inside the job's artifacts dir: the dir must
 * resolve inside `workspacesDir`, each file must be a regular file (symbolic
 * links are not followed) with the manifest's size and SHA-256. Throws an
 * {@link ArtifactError} naming the first file that fails. A control file
 * signed by an earlier attempt is verified by its kept original.
 */
export async function verifyArtifacts(workspacesDir: string, manifest: Manifest): Promise<VerifiedArtifacts> {
  const dir = await resolveArtifactsDir(workspacesDir, manifest);
  const originalsDir = join(dirname(dir), ORIGINALS_DIR);
  const files = new Map<string, VerifiedArtifact>();
  for (const entry of manifest.files) {
    files.set(entry.name, await verifyEntry(dir, originalsDir, entry));
  }
  return { dir, originalsDir, files };
}
