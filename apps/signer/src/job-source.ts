import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { isValidName, JOB_SOURCE_DIR, MAX_DSC_BYTES, PACKAGE_NAME, parseControlFile, type JobRecord } from '@spark/protocol';
import { ArtifactError } from './artifact-error.js';
import { JOB_LABEL } from './job-origin.js';
import { openJobDir, openWorkspaceFile, type JobDir } from './verify-artifacts.js';

/**
 * The source package the job builds, as Lighthouse handed it out: read from
 * the `.dsc` the builder fetched, which the signer trusts only because its
 * SHA-256 is the one the connector recorded from the hand-out.
 */
export interface JobSource {
  /** `source/<name>.dsc`, as refusals name it. */
  label: string;
  /** The `.dsc`'s `Binary` field: the binary packages the source builds (debian/control's, no `-dbgsym`). */
  binaries: readonly string[];
}

/** Suffix debhelper (dh_strip, dh_gencontrol) gives the automatic debug-symbol package of each binary package. */
export const DBGSYM_SUFFIX = '-dbgsym';

/**
 * The binary packages a job's results may contain: the `.dsc`'s, and each
 * one's `<package>-dbgsym`, which debhelper builds without debian/control
 * naming it (Laniakea imports those into the suite's debug suite, or drops them).
 */
export function allowedBinaryPackages(source: JobSource): Set<string> {
  return new Set(source.binaries.flatMap((name) => [name, `${name}${DBGSYM_SUFFIX}`]));
}

/**
 * Reads the job's `.dsc` from `<workspace>/source/<dscName>`, where the builder
 * keeps it (`JOB_SOURCE_DIR`): the directory opened once without following a
 * link, the file opened without following one, a regular file with one link,
 * at most {@link MAX_DSC_BYTES}, whose SHA-256 is the record's `dscSha256` —
 * Lighthouse's `sha256sum` — so the builder cannot put a `.dsc` of its own
 * there. Its `Source` and `Version` must be the record's; its `Binary` field
 * is the list returned. Throws an {@link ArtifactError} otherwise, also when
 * the record has no `.dsc` digest (written by a connector that did not keep it).
 */
export async function readJobSource(workspace: JobDir, record: JobRecord): Promise<JobSource> {
  const { dscName, dscSha256 } = record;
  if (!dscName || !dscSha256) {
    throw new ArtifactError(
      JOB_LABEL,
      'the job record names no .dsc and its SHA-256 (it was written by an older connector), so the binary packages of the source are unknown; retry the job',
    );
  }
  const label = `${JOB_SOURCE_DIR}/${dscName}`;
  let dir: JobDir;
  try {
    dir = await openJobDir(workspace.at(JOB_SOURCE_DIR), join(workspace.path, JOB_SOURCE_DIR), JOB_SOURCE_DIR);
  } catch (error) {
    if (error instanceof ArtifactError && error.reason === 'is missing') {
      throw new ArtifactError(label, 'missing from the job workspace: the signer needs the .dsc to know the binary packages of the source');
    }
    throw error;
  }
  let content: Buffer;
  try {
    const { handle, size } = await openWorkspaceFile(dir.at(dscName), label);
    try {
      if (size > MAX_DSC_BYTES) throw new ArtifactError(label, `is ${size} bytes, more than a .dsc may be (${MAX_DSC_BYTES})`);
      content = await handle.readFile();
    } finally {
      await handle.close();
    }
  } finally {
    await dir.close();
  }
  const sha256 = createHash('sha256').update(content).digest('hex');
  if (sha256 !== dscSha256) {
    throw new ArtifactError(label, `SHA-256 is ${sha256}, the job record says ${dscSha256}: this is not the .dsc Lighthouse handed out`);
  }
  let source: string | undefined;
  let version: string | undefined;
  let binary: string | undefined;
  try {
    const paragraph = parseControlFile(content.toString('utf8')).paragraphs[0];
    source = paragraph?.get('Source')?.trim();
    version = paragraph?.get('Version')?.trim();
    binary = paragraph?.get('Binary');
  } catch (error) {
    throw new ArtifactError(label, `is not a valid .dsc: ${(error as Error).message}`);
  }
  if (source !== record.package || version !== record.version) {
    throw new ArtifactError(
      label,
      `is ${source ?? '(no Source)'} ${version ?? '(no Version)'}, the job builds ${record.package} ${record.version}`,
    );
  }
  // deb822: a comma-separated list that may be folded over several lines.
  const binaries = (binary ?? '').split(/[\s,]+/).filter((name) => name !== '');
  if (binaries.length === 0) throw new ArtifactError(label, 'has no Binary field: the binary packages of the source are unknown');
  const invalid = binaries.find((name) => !isValidName(PACKAGE_NAME, name, 128));
  if (invalid !== undefined) throw new ArtifactError(label, `Binary names ${JSON.stringify(invalid)}, which is not a package name`);
  return { label, binaries };
}
