import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { splitClearsigned, type JobRecord, type Manifest } from '@spark/protocol';
import { ArtifactError } from './artifact-error.js';
import type { AuditJob, AuditLog } from './audit-log.js';
import { clearsign } from './clearsign.js';
import { checkListedFiles, controlFileText, listedFileNames, readControlFile, updateListedFile, type ControlFile } from './control-file.js';
import { checkChangesOrigin, checkDudOrigin, checkNothingUnlisted, checkRecord } from './job-origin.js';
import { readJobSource } from './job-source.js';
import { checkBuildinfo, checkChangesPackages } from './upload-contents.js';
import { digestBuffer, type Clock, type FileDigests } from '@spark/service';
import type { SigningKey } from '@spark/keys/signing-key';
import { openJobDir, ORIGINALS_DIR, verifyArtifacts, type JobDir, type VerifiedArtifact } from './verify-artifacts.js';

/** What signing needs besides the manifest. */
export interface SignDeps {
  /** `<WorkspaceRoot>/workspaces`. */
  workspacesDir: string;
  signingKey: SigningKey;
  audit: AuditLog;
  /** When each signature is made, as the audit log writes it. */
  clock: Clock;
  /** Test hook: runs after every check passed, before anything is signed or written. */
  afterChecks?: () => Promise<void>;
}

/** What the job was handed out as: the connector's record and the upload target of its repository. */
export interface SignOrigin {
  record: JobRecord | null;
  /** `<method>://<fqdn>` of the record's repository, null when unknown. */
  uploadTarget: string | null;
}

interface Signature {
  name: string;
  content: Buffer;
  digests: FileDigests;
  textSha256: string;
}

/** Files a `.changes` lists that `debsign` signs too (a `.dsc` never gets this far: see `checkChangesOrigin`). */
const SIGNED_WITH_CHANGES = ['.buildinfo'];

function artifactOf(files: ReadonlyMap<string, VerifiedArtifact>, name: string, role: string): VerifiedArtifact {
  const artifact = files.get(name);
  if (!artifact) throw new ArtifactError(name, `is the job's ${role} but not among its files`);
  return artifact;
}

/** The audit fields of a job: from its record where there is one, else from the manifest. */
export function auditJob(manifest: Pick<Manifest, 'uuid' | 'round'> & Partial<Pick<Manifest, 'repo'>>, origin: SignOrigin): AuditJob {
  const { record } = origin;
  return {
    uuid: manifest.uuid,
    round: manifest.round,
    package: record?.package ?? null,
    version: record?.version ?? null,
    distribution: record?.suite ?? null,
    repository: record?.repo ?? manifest.repo ?? null,
    uploadTarget: origin.uploadTarget,
  };
}

/**
 * Signs a job's results only when they are what Lighthouse handed out
 * (docs/architecture.md, "Trust boundary"):
 *
 * 1. the job record: there is one, the round is its current round, the repository is its;
 * 2. the files: opened once each, without following links, through the workspace
 *    and artifacts dirs held open (`verifyArtifacts`), each the manifest's size and SHA-256;
 * 3. the `.changes`' Source, Version, Distribution and Architecture against the
 *    record, the `.dud`'s X-Spark-Job and X-Spark-Result, their checksums against
 *    the files, and no manifest file listed in neither;
 * 4. what the `.changes` uploads: its Binary packages and every file name belong
 *    to the source, as the `.dsc` the record's SHA-256 names says (`readJobSource`,
 *    `checkChangesPackages`), and each `.buildinfo` it lists is one, of this build
 *    (`checkBuildinfo`).
 *
 * Then signs as `debsign` does, from what was checked: each `.buildinfo` the
 * `.changes` lists (written again from the fields that were parsed, so no
 * unparsed line is signed), the `.changes` (with the new digests), the `.dud`. Only once every signature is made, and the directories are checked to
 * still be where they were opened, are the audit lines written and the signed
 * files put in place — through the open directories, never through a path the
 * builder could redirect (the originals are kept in `ORIGINALS_DIR`).
 * Returns the manifest with the signed files' sizes and SHA-256. Throws
 * {@link ArtifactError}, having signed nothing, when a check fails.
 */
export async function signArtifacts(deps: SignDeps, manifest: Manifest, origin: SignOrigin): Promise<Manifest> {
  const { record } = origin;
  checkRecord(record, manifest);
  const verified = await verifyArtifacts(deps.workspacesDir, manifest);
  const opened: JobDir[] = [];
  try {
    const { files } = verified;
    const changes = manifest.changes === null ? null : readControlFile(artifactOf(files, manifest.changes, '.changes'));
    const dud = readControlFile(artifactOf(files, manifest.dud, '.dud'));
    if (changes) checkChangesOrigin(changes, record);
    checkDudOrigin(dud, record, manifest);
    const controls = changes ? [changes, dud] : [dud];
    for (const control of controls) checkListedFiles(control, files);
    checkNothingUnlisted(manifest, controls);
    // The .buildinfo files the .changes lists, parsed and checked: they are signed from what was parsed.
    const buildinfos: ControlFile[] = [];
    if (changes) {
      const source = await readJobSource(verified.workspace, record);
      checkChangesPackages(changes, record, source);
      for (const name of listedFileNames(changes).filter((listed) => SIGNED_WITH_CHANGES.some((suffix) => listed.endsWith(suffix)))) {
        const buildinfo = readControlFile(artifactOf(files, name, 'listed file'));
        checkBuildinfo(buildinfo, changes, record, source, files);
        buildinfos.push(buildinfo);
      }
    }
    const originals = await openOriginalsForWriting(verified.workspace);
    opened.push(originals);
    await deps.afterChecks?.();

    const signatures: Signature[] = [];
    const sign = async (name: string, input: string): Promise<Signature> => {
      const text = splitClearsigned(input)?.text ?? input;
      const content = Buffer.from(await clearsign(text, deps.signingKey.key), 'utf8');
      const signature = { name, content, digests: digestBuffer(content), textSha256: createHash('sha256').update(text).digest('hex') };
      signatures.push(signature);
      return signature;
    };
    const signControl = async (control: ControlFile): Promise<void> => {
      for (const earlier of signatures) updateListedFile(control, earlier.name, earlier.digests);
      await sign(control.name, controlFileText(control));
    };
    if (changes) {
      for (const buildinfo of buildinfos) await sign(buildinfo.name, controlFileText(buildinfo));
      await signControl(changes);
    }
    await signControl(dud);

    // The last moment a refusal still means nothing was signed: no signature has left memory yet.
    for (const dir of [verified.workspace, verified.artifacts, originals]) await dir.checkInPlace();
    const job = auditJob(manifest, origin);
    for (const signature of signatures) {
      await deps.audit.append({
        event: 'signed',
        time: new Date(deps.clock.now()).toISOString(),
        ...job,
        file: signature.name,
        textSha256: signature.textSha256,
        sha256: signature.digests.sha256,
        fingerprint: deps.signingKey.fingerprint,
      });
    }
    await keepOriginals(
      originals,
      signatures.map((signature) => artifactOf(files, signature.name, 'signed file')),
    );
    await replaceFiles(verified.artifacts, signatures);
    const signed = new Map(signatures.map((signature) => [signature.name, signature.digests]));
    return {
      ...manifest,
      files: manifest.files.map((entry) => {
        const digests = signed.get(entry.name);
        return digests ? { ...entry, size: digests.size, sha256: digests.sha256 } : entry;
      }),
    };
  } finally {
    for (const dir of opened) await dir.close().catch(() => undefined);
    await verified.close();
  }
}

/**
 * Creates a file that must not exist yet, never through a link (`O_EXCL`
 * refuses one at the name). A write that fails (a full disk) removes the
 * file: cut short, it would be taken for a kept original on the next try.
 */
async function createFile(path: string, content: Buffer): Promise<void> {
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  let written = false;
  try {
    await handle.writeFile(content);
    written = true;
  } finally {
    await handle.close();
    if (!written) await rm(path, { force: true });
  }
}

/** Creates `<workspace>/signer-originals` when missing and opens it (a link planted there is refused). */
async function openOriginalsForWriting(workspace: JobDir): Promise<JobDir> {
  // mkdir never follows a link at the name: a planted link makes it fail with EEXIST, and opening it then refuses it.
  // Group-writable like the rest of the workspace: the uploader (group lkspark) removes the
  // workspace once it is uploaded, this directory included. Nothing in it is signed from.
  await mkdir(workspace.at(ORIGINALS_DIR), { mode: 0o770 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  return openJobDir(workspace.at(ORIGINALS_DIR), join(workspace.path, ORIGINALS_DIR), ORIGINALS_DIR);
}

/** Keeps each control file as verified, once: a retry must not keep the signed file it left behind. */
async function keepOriginals(originals: JobDir, artifacts: readonly VerifiedArtifact[]): Promise<void> {
  for (const { entry, content } of artifacts) {
    if (!content) continue;
    await createFile(originals.at(entry.name), content).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }
}

async function replaceFiles(artifacts: JobDir, signatures: readonly Signature[]): Promise<void> {
  const temps = signatures.map((signature) => ({ ...signature, temp: artifacts.at(`.${signature.name}.signed-${process.pid}`) }));
  try {
    for (const { temp, content } of temps) {
      await rm(temp, { force: true });
      await createFile(temp, content);
    }
    // rename replaces whatever is at the name (a link included) and never follows it.
    for (const { temp, name } of temps) await rename(temp, artifacts.at(name));
  } finally {
    await Promise.all(temps.map(({ temp }) => rm(temp, { force: true })));
  }
}
