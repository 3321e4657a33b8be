import { parseFileList, parseUploadFileName, versionWithoutEpoch, type FileListEntry, type JobRecord } from '@spark/protocol';
import type { FileDigests } from '@spark/service';
import { ArtifactError } from './artifact-error.js';
import { everyListedFileName, type ControlFile } from './control-file.js';
import { allowedChangesArchitectures } from './job-origin.js';
import { allowedBinaryPackages, type JobSource } from './job-source.js';
import type { VerifiedArtifact } from './verify-artifacts.js';

/*
 * What a `.changes` uploads and what its `.buildinfo` says, against the source
 * Lighthouse handed out (docs/architecture.md, "Trust boundary"). The builder
 * writes both: a `.changes` of the right Source may still carry another
 * source's packages, and a `.buildinfo` is signed with the archive key, so
 * without these checks any text listed under that name would be signed — a
 * `.changes` or `.dud` of another job included.
 */

/** File types that are binary packages: dpkg's `.deb` and `.udeb`, and Ubuntu's `.ddeb` debug packages. */
const BINARY_PACKAGE_TYPES = ['deb', 'udeb', 'ddeb'];

/** The digest lists of a `.buildinfo` (deb-buildinfo(5), all required) and the digest each carries. */
const BUILDINFO_CHECKSUMS = [
  { field: 'Checksums-Md5', digest: 'md5' },
  { field: 'Checksums-Sha1', digest: 'sha1' },
  { field: 'Checksums-Sha256', digest: 'sha256' },
] as const satisfies readonly { field: string; digest: keyof FileDigests }[];

/** The `.buildinfo` format dpkg writes (deb-buildinfo(5): "The current format version is 1.0"); a `.changes` or `.dud` says 1.8. */
const BUILDINFO_FORMAT = '1.0';

/** Fields a `.buildinfo` has (deb-buildinfo(5) marks them required; `Binary` is, for any build with binaries). */
const BUILDINFO_REQUIRED = ['Format', 'Source', 'Binary', 'Architecture', 'Version', 'Build-Architecture'];

/**
 * Fields by which a `.changes`, `.dsc` or `.dud` is taken for one (they list
 * an upload's files, name its suite, its job): a `.buildinfo` has none of them.
 */
const NOT_BUILDINFO_FIELDS = ['Files', 'Distribution', 'Changes', 'X-Spark-Job', 'X-Spark-Result'];

function describeList(names: readonly string[]): string {
  return names.length > 12 ? `${names.slice(0, 12).join(', ')}, …` : names.join(', ');
}

function words(value: string | undefined): string[] {
  return (value ?? '').split(/\s+/).filter((word) => word !== '');
}

/**
 * Checks that everything a `.changes` uploads belongs to the job's source:
 *
 * - every name in `Binary` is a binary package of the source's `.dsc` or its
 *   `-dbgsym` package ({@link allowedBinaryPackages});
 * - the `.changes` itself and every file any of its lists names is called
 *   `<package>_<version>_<architecture>.<type>`, with the job's version
 *   without epoch and an architecture the job may upload
 *   (`allowedChangesArchitectures`); the package of a `.deb`, `.udeb` or
 *   `.ddeb` is one of those binary packages, the package of anything else
 *   (`.changes`, `.buildinfo`) the source.
 */
export function checkChangesPackages(changes: ControlFile, record: JobRecord, source: JobSource): void {
  const allowed = allowedBinaryPackages(source);
  const fromDsc = `its .dsc lists ${describeList(source.binaries)}`;
  const binary = changes.paragraph.get('Binary');
  if (binary === undefined || binary.trim() === '') throw new ArtifactError(changes.name, 'has no Binary field');
  for (const name of words(binary)) {
    if (!allowed.has(name)) {
      throw new ArtifactError(changes.name, `Binary names ${name}, which ${record.package} does not build (${fromDsc})`);
    }
  }
  const version = versionWithoutEpoch(record.version ?? '');
  const architectures = allowedChangesArchitectures(record);
  for (const name of [changes.name, ...everyListedFileName(changes)]) {
    const listed = name === changes.name ? '' : ` (listed in ${changes.name})`;
    const parts = parseUploadFileName(name);
    if (!parts) {
      throw new ArtifactError(name, `is not named <package>_<version>_<architecture>.<type>${listed}`);
    }
    if (BINARY_PACKAGE_TYPES.includes(parts.type)) {
      if (!allowed.has(parts.package)) {
        throw new ArtifactError(name, `is a package of ${parts.package}, which ${record.package} does not build (${fromDsc})${listed}`);
      }
    } else if (parts.package !== record.package) {
      throw new ArtifactError(name, `names ${parts.package}, the job builds ${record.package}${listed}`);
    }
    if (parts.version !== version) {
      throw new ArtifactError(name, `names version ${parts.version}, the job builds ${record.package} ${version}${listed}`);
    }
    if (!architectures.includes(parts.architecture)) {
      throw new ArtifactError(
        name,
        `names architecture ${parts.architecture}; a ${record.architecture} job may upload ${architectures.join(', ')}${listed}`,
      );
    }
  }
}

function buildinfoList(buildinfo: ControlFile, field: string): FileListEntry[] {
  try {
    return parseFileList(buildinfo.paragraph.get(field));
  } catch (error) {
    throw new ArtifactError(buildinfo.name, `${field}: ${(error as Error).message}`);
  }
}

/**
 * Checks that a file the `.changes` lists as a `.buildinfo` is one, of this
 * build, before it is signed:
 *
 * - none of the fields that make a text a `.changes`, `.dsc` or `.dud`
 *   (`Files`, `Distribution`, …), `Format` 1.0, and every field
 *   deb-buildinfo(5) requires;
 * - `Source` the job's package (a `(version)` after it, the job's version),
 *   `Version` the job's;
 * - every `Architecture` one the `.changes` names, every `Binary` package one
 *   the source builds;
 * - `Checksums-Md5`, `-Sha1`, `-Sha256` name only files the same `.changes`
 *   lists (not the `.buildinfo` itself), with those files' sizes and digests,
 *   and `Checksums-Sha256` names at least one.
 *
 * `files` are the job's verified files. Throws an {@link ArtifactError} naming the `.buildinfo`.
 */
export function checkBuildinfo(
  buildinfo: ControlFile,
  changes: ControlFile,
  record: JobRecord,
  source: JobSource,
  files: ReadonlyMap<string, VerifiedArtifact>,
): void {
  const name = buildinfo.name;
  const { paragraph } = buildinfo;
  for (const field of NOT_BUILDINFO_FIELDS) {
    if (paragraph.get(field) !== undefined) {
      throw new ArtifactError(name, `has a ${field} field: it is a .changes, .dsc or .dud, not a .buildinfo`);
    }
  }
  const format = paragraph.get('Format')?.trim();
  if (format !== BUILDINFO_FORMAT) {
    throw new ArtifactError(
      name,
      `Format is ${format === undefined ? 'missing' : JSON.stringify(format)}, not a .buildinfo's (${BUILDINFO_FORMAT})`,
    );
  }
  for (const field of [...BUILDINFO_REQUIRED, ...BUILDINFO_CHECKSUMS.map((list) => list.field)]) {
    if (paragraph.get(field) === undefined) throw new ArtifactError(name, `has no ${field} field`);
  }
  const [sourceName, sourceVersion, ...rest] = words(paragraph.get('Source'));
  if (sourceName !== record.package)
    throw new ArtifactError(name, `Source is ${sourceName ?? '(empty)'}, the job builds ${record.package}`);
  if (rest.length > 0 || (sourceVersion !== undefined && sourceVersion !== `(${record.version})`)) {
    throw new ArtifactError(
      name,
      `Source is ${words(paragraph.get('Source')).join(' ')}, the job builds ${record.package} ${record.version}`,
    );
  }
  const version = paragraph.get('Version')?.trim();
  if (version !== record.version) {
    throw new ArtifactError(name, `Version is ${version ?? '(empty)'}, the job builds ${record.package} ${record.version}`);
  }
  const changesArchitectures = words(changes.paragraph.get('Architecture'));
  const architectures = words(paragraph.get('Architecture'));
  if (architectures.length === 0) throw new ArtifactError(name, 'has an empty Architecture field');
  for (const architecture of architectures) {
    if (!changesArchitectures.includes(architecture)) {
      throw new ArtifactError(name, `Architecture names ${architecture}, ${changes.name} uploads ${changesArchitectures.join(', ')}`);
    }
  }
  const allowed = allowedBinaryPackages(source);
  for (const binary of words(paragraph.get('Binary'))) {
    if (!allowed.has(binary)) {
      throw new ArtifactError(
        name,
        `Binary names ${binary}, which ${record.package} does not build (its .dsc lists ${describeList(source.binaries)})`,
      );
    }
  }
  const listed = new Set(everyListedFileName(changes));
  for (const { field, digest } of BUILDINFO_CHECKSUMS) {
    const entries = buildinfoList(buildinfo, field);
    if (field === 'Checksums-Sha256' && entries.length === 0) throw new ArtifactError(name, `${field} names no file`);
    for (const entry of entries) {
      const artifact = files.get(entry.name);
      if (entry.name === name) throw new ArtifactError(name, `${field} names the .buildinfo itself`);
      if (!listed.has(entry.name) || !artifact) {
        throw new ArtifactError(name, `${field} names ${entry.name}, which ${changes.name} does not upload`);
      }
      if (entry.size !== artifact.digests.size || entry.digest.toLowerCase() !== artifact.digests[digest]) {
        throw new ArtifactError(
          name,
          `${field} says ${entry.digest} ${entry.size} for ${entry.name}, the file has ${artifact.digests[digest]} ${artifact.digests.size}`,
        );
      }
    }
  }
}
