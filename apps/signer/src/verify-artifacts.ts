import { constants } from 'node:fs';
import { open, realpath, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { jobWorkspaceDir, type JobRound, type Manifest, type ManifestEntry } from '@spark/protocol';
import { ArtifactError } from './artifact-error.js';
import { digestBuffer, digestStream, HeldDirError, openHeldDir, type FileDigests, type HeldDir } from '@spark/service';

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

/**
 * A directory of the job's workspace held open ({@link HeldDir}: every later
 * step reaches its entries through the open directory, never through the
 * workspace path again), which the signer checks is still in place before it
 * writes a signature.
 */
export interface JobDir extends HeldDir {
  /** Throws an {@link ArtifactError} unless the opened directory is still at {@link HeldDir.path}. */
  checkInPlace(): Promise<void>;
}

/** The job's artifacts dir held open, and its verified files by name. */
export interface VerifiedArtifacts {
  /** The round's workspace, `<workspacesDir>/<uuid>.<round>`. */
  workspace: JobDir;
  /** Its `artifacts` dir. */
  artifacts: JobDir;
  files: Map<string, VerifiedArtifact>;
  /** Closes both directories. */
  close(): Promise<void>;
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

/**
 * Opens the directory `path` as {@link openHeldDir} does (no link followed,
 * its canonical path checked against `expected`); its problems are
 * {@link ArtifactError}s labelled `label`.
 */
export async function openJobDir(path: string, expected: string, label: string): Promise<JobDir> {
  let dir: HeldDir;
  try {
    dir = await openHeldDir(path, expected, label);
  } catch (error) {
    if (!(error instanceof HeldDirError)) throw error;
    throw new ArtifactError(label, error.reason === 'is missing' ? error.reason : `${error.reason}; refusing it`);
  }
  return {
    ...dir,
    async checkInPlace() {
      const now = await dir.whereNow();
      if (now !== expected) throw new ArtifactError(label, `was moved to ${now} while the signer worked on it; refusing the job`);
    },
  };
}

async function openNoFollow(path: string, name: string): Promise<FileHandle> {
  try {
    return await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ArtifactError(name, 'missing from the job workspace');
    if (code === 'ELOOP') throw new ArtifactError(name, 'is a symbolic link; only regular files in the workspace are signed');
    throw new ArtifactError(name, `cannot open: ${code ?? String(error)}`);
  }
}

async function verifyEntry(artifacts: JobDir, originals: JobDir | null, entry: ManifestEntry): Promise<VerifiedArtifact> {
  try {
    return await verifyFile(artifacts.at(entry.name), entry);
  } catch (error) {
    if (!(error instanceof ArtifactError) || !isControlFileName(entry.name) || !originals) throw error;
    const kept = await verifyFile(originals.at(entry.name), entry).catch(() => null);
    if (kept) return kept;
    throw error;
  }
}

/**
 * Opens `path` without following a link and checks what was opened, not the
 * path: a regular file with one link (a device, a FIFO or a hard link to a
 * file elsewhere is refused). `name` labels it in errors. The caller closes it.
 */
export async function openWorkspaceFile(path: string, name: string): Promise<{ handle: FileHandle; size: number }> {
  const handle = await openNoFollow(path, name);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ArtifactError(name, 'is not a regular file');
    if (info.nlink !== 1) {
      throw new ArtifactError(name, `has ${info.nlink} hard links; only files that exist once, in the workspace, are signed`);
    }
    return { handle, size: info.size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

async function verifyFile(path: string, entry: ManifestEntry): Promise<VerifiedArtifact> {
  const { handle, size } = await openWorkspaceFile(path, entry.name);
  try {
    if (size !== entry.size) {
      throw new ArtifactError(entry.name, `is ${size} bytes, the manifest says ${entry.size}`);
    }
    const control = isControlFileName(entry.name);
    if (control && size > MAX_CONTROL_FILE_BYTES) {
      throw new ArtifactError(entry.name, `is ${size} bytes, more than a control file may be (${MAX_CONTROL_FILE_BYTES})`);
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

/** Opens `<workspace>/signer-originals` when it is there (a directory, not a link); null when it is not. */
export async function openOriginalsDir(workspace: JobDir): Promise<JobDir | null> {
  try {
    return await openJobDir(workspace.at(ORIGINALS_DIR), join(workspace.path, ORIGINALS_DIR), ORIGINALS_DIR);
  } catch (error) {
    if (error instanceof ArtifactError && error.reason === 'is missing') return null;
    throw error;
  }
}

/**
 * Opens the round's workspace and its `artifacts` dir once (see
 * {@link JobDir}): both must be directories at their canonical place under
 * `workspacesDir`, reached without a link. Then checks every manifest file in
 * it: opened without following a link, it must be a regular file with one
 * link, the manifest's size and SHA-256. Throws an {@link ArtifactError}
 * naming the first thing that fails. A control file signed by an earlier
 * attempt is verified by its kept original. The caller closes the result.
 */
export async function verifyArtifacts(workspacesDir: string, manifest: Manifest): Promise<VerifiedArtifacts> {
  let root: string;
  try {
    root = await realpath(workspacesDir);
  } catch (error) {
    throw new ArtifactError('workspaces', `cannot open ${workspacesDir}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  const expected = jobWorkspaceDir(root, manifest satisfies JobRound);
  const workspace = await openJobDir(expected, expected, 'the job workspace');
  const opened: JobDir[] = [workspace];
  const close = async () => {
    for (const dir of opened) await dir.close().catch(() => undefined);
  };
  try {
    const artifacts = await openJobDir(workspace.at('artifacts'), join(expected, 'artifacts'), 'artifacts');
    opened.push(artifacts);
    const originals = await openOriginalsDir(workspace);
    const files = new Map<string, VerifiedArtifact>();
    try {
      for (const entry of manifest.files) files.set(entry.name, await verifyEntry(artifacts, originals, entry));
    } finally {
      await originals?.close();
    }
    return { workspace, artifacts, files, close };
  } catch (error) {
    await close();
    throw error;
  }
}
