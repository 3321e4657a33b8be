import { createHash } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { splitClearsigned, type Manifest } from '@spark/protocol';
import { ArtifactError } from './artifact-error.js';
import type { AuditLog } from './audit-log.js';
import { clearsign } from './clearsign.js';
import { checkListedFiles, controlFileText, listedFileNames, readControlFile, updateListedFile, type ControlFile } from './control-file.js';
import { digestBuffer, type FileDigests } from '@spark/service';
import type { SigningKey } from './signing-key.js';
import { verifyArtifacts, type VerifiedArtifact } from './verify-artifacts.js';

/** What signing needs besides the manifest. */
export interface SignDeps {
  /** `<WorkspaceRoot>/workspaces`. */
  workspacesDir: string;
  signingKey: SigningKey;
  audit: AuditLog;
}

interface Signature {
  name: string;
  content: Buffer;
  digests: FileDigests;
}

/** Files a `.changes` lists that `debsign` signs too. */
const SIGNED_WITH_CHANGES = ['.dsc', '.buildinfo'];

function artifactOf(files: ReadonlyMap<string, VerifiedArtifact>, name: string, role: string): VerifiedArtifact {
  const artifact = files.get(name);
  if (!artifact) throw new ArtifactError(name, `is the job's ${role} but not among its files`);
  return artifact;
}

/**
 * Verifies the job's files against its manifest and the checksums in its
 * `.changes`/`.dud`, then signs as `debsign` does: the `.dsc`/`.buildinfo` the
 * `.changes` lists, their new sizes and digests written into the `.changes`
 * (and the `.dud`), the `.changes`, then the `.dud`. Signed files replace the
 * originals only once every signature is made (the originals are kept, see
 * `ORIGINALS_DIR`); each signature gets an audit line. Returns the manifest with the signed files' sizes and SHA-256.
 * Throws {@link ArtifactError}, having signed nothing, when a check fails.
 */
export async function signArtifacts(deps: SignDeps, manifest: Manifest): Promise<Manifest> {
  const { dir, originalsDir, files } = await verifyArtifacts(deps.workspacesDir, manifest);
  const changes = manifest.changes === null ? null : readControlFile(artifactOf(files, manifest.changes, '.changes'));
  const dud = readControlFile(artifactOf(files, manifest.dud, '.dud'));
  for (const control of [changes, dud]) {
    if (control) checkListedFiles(control, files);
  }

  const signatures: Signature[] = [];
  const sign = async (name: string, input: string): Promise<Signature> => {
    const text = splitClearsigned(input)?.text ?? input;
    const content = Buffer.from(await clearsign(text, deps.signingKey.key), 'utf8');
    const signature = { name, content, digests: digestBuffer(content) };
    await deps.audit.append({
      time: new Date().toISOString(),
      uuid: manifest.uuid,
      file: name,
      textSha256: createHash('sha256').update(text).digest('hex'),
      sha256: signature.digests.sha256,
      fingerprint: deps.signingKey.fingerprint,
    });
    signatures.push(signature);
    return signature;
  };
  const signControl = async (control: ControlFile): Promise<void> => {
    for (const earlier of signatures) updateListedFile(control, earlier.name, earlier.digests);
    await sign(control.name, controlFileText(control));
  };

  if (changes) {
    for (const name of listedFileNames(changes).filter((listed) => SIGNED_WITH_CHANGES.some((suffix) => listed.endsWith(suffix)))) {
      const content = artifactOf(files, name, 'listed file').content;
      if (content) await sign(name, content.toString('utf8'));
    }
    await signControl(changes);
  }
  await signControl(dud);

  await keepOriginals(
    originalsDir,
    signatures.map((signature) => artifactOf(files, signature.name, 'signed file')),
  );
  await replaceFiles(dir, signatures);
  const signed = new Map(signatures.map((signature) => [signature.name, signature.digests]));
  return {
    ...manifest,
    files: manifest.files.map((entry) => {
      const digests = signed.get(entry.name);
      return digests ? { ...entry, size: digests.size, sha256: digests.sha256 } : entry;
    }),
  };
}

/** Keeps each control file as verified, once: a retry must not keep the signed file it left behind. */
async function keepOriginals(originalsDir: string, artifacts: readonly VerifiedArtifact[]): Promise<void> {
  // Group-writable like the rest of the workspace: the uploader (group lkspark)
  // removes the workspace once it is uploaded, this directory included.
  await mkdir(originalsDir, { recursive: true, mode: 0o770 });
  for (const { entry, content } of artifacts) {
    if (!content) continue;
    try {
      await writeFile(join(originalsDir, entry.name), content, { mode: 0o644, flag: 'wx' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
}

async function replaceFiles(dir: string, signatures: readonly Signature[]): Promise<void> {
  const temps = signatures.map((signature) => ({ ...signature, temp: join(dir, `.${signature.name}.signed-${process.pid}`) }));
  try {
    for (const { temp, content } of temps) await writeFile(temp, content, { mode: 0o644, flag: 'wx' });
    for (const { temp, name } of temps) await rename(temp, join(dir, name));
  } finally {
    await Promise.all(temps.map(({ temp }) => rm(temp, { force: true })));
  }
}
