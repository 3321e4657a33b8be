import { isSafeFileName, parseControlFile, parseFileList, type Manifest, type ManifestEntry } from '@spark/protocol';
import type { HeldDir } from '@spark/service';
import { readSignedFile, SIGNER_MANIFEST, type SignedFile } from './signed-artifacts.js';

/** A control file's `.changes`/`.dud` list cannot be uploaded as it stands; the job fails with this message. */
export class UploadPlanError extends Error {
  override name = 'UploadPlanError';
}

/** Longest control file we read, in bytes (a `.changes` listing thousands of files is far below this). */
const MAX_CONTROL_FILE_BYTES = 4 * 1024 * 1024;

/** A control file's lists: the names in `Files`, in order, and what `Checksums-Sha256` says of each name it lists. */
interface ListedFiles {
  names: string[];
  checksums: Map<string, { size: number; sha256: string }>;
}

/**
 * What the job sends and in which order, each file with the size and SHA-256
 * it must have: the files the `.changes` lists, the `.dud`'s files not
 * already among them, then the `.changes`, then the `.dud` — as dput-ng
 * uploads a control file (its files, then itself) run for the `.changes` and
 * then the `.dud`, except that the `.changes` waits until the `.dud`'s files
 * are in too. The archive imports a set once its control file is in
 * (lkwebupload), so with both control files last a file found not to be what
 * was signed stops the upload before any control file went out: the archive
 * imports nothing of the round, which is then reported failed — not the
 * packages of a job whose log or `.dud` never arrived.
 *
 * Where the sizes and digests come from: the manifest of the `upload` job is
 * the one source of truth. The signer wrote it to the `upload` queue, which
 * the builder's Redis user cannot read or write (REDIS_GRANTS in libs/service
 * redis-acl.ts); it holds the size and SHA-256 of every file as the signer
 * checked it (or, for a file it signed, as it wrote it), so it vouches for the
 * control files themselves, which nothing else can. The signed `.changes`/`.dud` lie in
 * the builder's workspace: they are read only after their bytes matched the
 * manifest, for the file lists (which file belongs to which upload) and, as a
 * check, their `Checksums-Sha256`, which must give every listed file the
 * manifest's size and SHA-256 (the signer checked this when signing; the
 * archive checks the files against these lists) — so a message can say what
 * "the signed .changes says" of a file.
 *
 * Every listed name must be a plain file name among the manifest's files:
 * nothing outside the artifacts dir is ever read. Throws
 * {@link UploadPlanError} when the lists cannot be uploaded as they are, and
 * NotAsSignedError when a control file is not the one that was signed.
 */
export async function uploadOrder(manifest: Manifest, artifacts: HeldDir): Promise<SignedFile[]> {
  const entries = new Map(manifest.files.map((entry) => [entry.name, entry]));
  const order = new Map<string, SignedFile>();
  const controls = [manifest.changes, manifest.dud].filter((name): name is string => name !== null);
  for (const control of controls) {
    const entry = entries.get(control) as ManifestEntry;
    const { names, checksums } = await listedFiles(artifacts, { ...entry, signedBy: SIGNER_MANIFEST });
    for (const name of names) {
      if (!isSafeFileName(name)) {
        throw new UploadPlanError(`${control} lists ${JSON.stringify(name.slice(0, 80))}, which is not a plain file name`);
      }
      const signed = entries.get(name);
      if (!signed) throw new UploadPlanError(`${control} lists ${name}, which is not in the job's signed manifest`);
      if (controls.includes(name)) throw new UploadPlanError(`${control} lists the control file ${name} as its own payload`);
      const says = checksums.get(name);
      if (!says) throw new UploadPlanError(`${control} lists ${name} in Files but not in Checksums-Sha256`);
      if (says.size !== signed.size || says.sha256 !== signed.sha256) {
        throw new UploadPlanError(
          `${control} lists ${name} with ${says.size} bytes and SHA-256 ${says.sha256}, ${SIGNER_MANIFEST} says ${signed.size} bytes and SHA-256 ${signed.sha256}`,
        );
      }
      if (!order.has(name)) order.set(name, { ...signed, signedBy: `the signed ${control}` });
    }
  }
  for (const control of controls) order.set(control, { ...(entries.get(control) as ManifestEntry), signedBy: SIGNER_MANIFEST });
  return [...order.values()];
}

/** The files a control file lists, read from its checked bytes. */
async function listedFiles(artifacts: HeldDir, control: SignedFile): Promise<ListedFiles> {
  const buffer = await readSignedFile(artifacts, control, MAX_CONTROL_FILE_BYTES);
  try {
    const { paragraphs } = parseControlFile(buffer.toString('utf8'));
    const first = paragraphs[0];
    if (!first) throw new Error('no fields');
    return {
      names: parseFileList(first.get('Files')).map((entry) => entry.name),
      checksums: new Map(
        parseFileList(first.get('Checksums-Sha256')).map((entry) => [entry.name, { size: entry.size, sha256: entry.digest.toLowerCase() }]),
      ),
    };
  } catch (error) {
    throw new UploadPlanError(`${control.name} cannot be read as a Debian control file: ${(error as Error).message}`);
  }
}
