import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Deb822Paragraph, formatFileList, writeDeb822, type BuildResult } from '@spark/protocol';
import { digestBuffer, digestFile, type FileDigests } from '@spark/service';

/** `<uuid>.dud`, as spark names it (spark/worker.py). */
export function dudFileName(uuid: string): string {
  return `${uuid}.dud`;
}

/** RFC 2822 date in UTC, as Python's `email.utils.formatdate` writes it (`Thu, 26 Nov 2026 01:23:44 -0000`). */
export function rfc2822Date(date: Date): string {
  const [weekday, day, month, year, time] = date.toUTCString().split(' ');
  return `${weekday} ${day} ${month} ${year} ${time} -0000`;
}

/** What a `.dud` describes. */
export interface DudContent {
  uuid: string;
  /** The job's architecture. */
  architecture: string;
  result: BuildResult;
  /** Names of files in `dir` the `.dud` covers (the log, the Firehose report, other artifacts). */
  files: readonly string[];
  /** Digests already read of some of those files, by name; the others are read here. */
  digests?: ReadonlyMap<string, FileDigests>;
  date?: Date;
}

/**
 * Writes the job's `.dud` (Debian upload description, `Format: 1.8`) into
 * `dir`, listing each file with MD5, SHA-1 and SHA-256 (section and priority
 * `spark`, as spark writes them). Returns its file name and its own digests
 * (of the bytes written: it is not read back).
 */
export async function writeDud(dir: string, content: DudContent): Promise<{ name: string; digests: FileDigests }> {
  const digests: [string, FileDigests][] = [];
  for (const name of content.files) digests.push([name, content.digests?.get(name) ?? (await digestFile(join(dir, name)))]);
  const paragraph = new Deb822Paragraph([
    ['Format', '1.8'],
    ['Date', rfc2822Date(content.date ?? new Date())],
    ['Architecture', content.architecture],
    ['X-Spark-Job', content.uuid],
    ['X-Spark-Result', content.result],
    ['Files', formatFileList(digests.map(([name, d]) => ({ digest: d.md5, size: d.size, section: 'spark', priority: 'spark', name })))],
    ['Checksums-Sha1', formatFileList(digests.map(([name, d]) => ({ digest: d.sha1, size: d.size, name })))],
    ['Checksums-Sha256', formatFileList(digests.map(([name, d]) => ({ digest: d.sha256, size: d.size, name })))],
  ]);
  const name = dudFileName(content.uuid);
  const bytes = Buffer.from(writeDeb822([paragraph]));
  await writeFile(join(dir, name), bytes, { mode: 0o644 });
  return { name, digests: digestBuffer(bytes) };
}
