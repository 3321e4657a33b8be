import { formatFileList, parseControlFile, parseFileList, writeDeb822, type Deb822Paragraph, type FileListEntry } from '@spark/protocol';
import { ArtifactError } from './artifact-error.js';
import type { FileDigests } from '@spark/service';
import type { VerifiedArtifact } from './verify-artifacts.js';

/** The file lists of a `.changes`/`.dud` and the digest each one carries. */
const FILE_LISTS = [
  { field: 'Files', digest: 'md5' },
  { field: 'Checksums-Sha1', digest: 'sha1' },
  { field: 'Checksums-Sha256', digest: 'sha256' },
] as const satisfies readonly { field: string; digest: keyof FileDigests }[];

/** A `.changes` or `.dud` read from its verified bytes, without any old signature. */
export interface ControlFile {
  name: string;
  paragraph: Deb822Paragraph;
}

/** Parses a verified control file; a syntax error refuses the job. */
export function readControlFile(artifact: VerifiedArtifact): ControlFile {
  const name = artifact.entry.name;
  if (!artifact.content) throw new ArtifactError(name, 'is not a control file');
  let paragraphs: Deb822Paragraph[];
  try {
    paragraphs = parseControlFile(artifact.content.toString('utf8')).paragraphs;
  } catch (error) {
    throw new ArtifactError(name, `is not a valid control file: ${(error as Error).message}`);
  }
  const [paragraph, ...rest] = paragraphs;
  if (!paragraph || rest.length > 0) throw new ArtifactError(name, `has ${paragraphs.length} paragraphs, expected one`);
  return { name, paragraph };
}

function fileList(control: ControlFile, field: string): FileListEntry[] {
  try {
    return parseFileList(control.paragraph.get(field));
  } catch (error) {
    throw new ArtifactError(control.name, `${field}: ${(error as Error).message}`);
  }
}

/** The names a control file's `Files` field lists, in order. */
export function listedFileNames(control: ControlFile): string[] {
  return fileList(control, 'Files').map((entry) => entry.name);
}

/** Every name any of the control file's file lists (`Files`, `Checksums-Sha1`, `Checksums-Sha256`) names, once each. */
export function everyListedFileName(control: ControlFile): string[] {
  return [...new Set(FILE_LISTS.flatMap(({ field }) => fileList(control, field).map((entry) => entry.name)))];
}

/**
 * Checks that every file the control file lists is a verified manifest file
 * whose size and MD5/SHA-1/SHA-256 match, and that `Files` is not empty.
 */
export function checkListedFiles(control: ControlFile, files: ReadonlyMap<string, VerifiedArtifact>): void {
  if (fileList(control, 'Files').length === 0) throw new ArtifactError(control.name, 'lists no Files');
  for (const { field, digest } of FILE_LISTS) {
    for (const listed of fileList(control, field)) {
      const artifact = files.get(listed.name);
      if (!artifact) {
        throw new ArtifactError(listed.name, `is listed in ${control.name} but not in the manifest`);
      }
      if (listed.size !== artifact.digests.size || listed.digest.toLowerCase() !== artifact.digests[digest]) {
        throw new ArtifactError(
          listed.name,
          `${control.name} ${field} says ${listed.digest} ${listed.size}, the file has ${artifact.digests[digest]} ${artifact.digests.size}`,
        );
      }
    }
  }
}

/** Sets a listed file's size and digests in every file list of the control file. */
export function updateListedFile(control: ControlFile, name: string, digests: FileDigests): void {
  for (const { field, digest } of FILE_LISTS) {
    const entries = fileList(control, field);
    if (!entries.some((entry) => entry.name === name)) continue;
    const updated = entries.map((entry) => (entry.name === name ? { ...entry, digest: digests[digest], size: digests.size } : entry));
    control.paragraph.set(field, formatFileList(updated));
  }
}

/** The control file's text (unsigned). */
export function controlFileText(control: ControlFile): string {
  return writeDeb822([control.paragraph]);
}
