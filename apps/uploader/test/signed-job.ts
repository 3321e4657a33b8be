import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jobArtifactsDir, jobLogFile, type BuildResult, type Manifest } from '@spark/protocol';
import { TEST_ROUND } from './harness.js';

const run = promisify(execFile);

/** A throwaway OpenPGP key in its own GNUPGHOME, to clearsign control files as the signer would. */
export async function makeSigningKey(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'spark-gpg-'));
  await run('gpg', [
    '--homedir',
    home,
    '--batch',
    '--pinentry-mode',
    'loopback',
    '--passphrase',
    '',
    '--quick-gen-key',
    'Spark Tests <spark-tests@example.org>',
    'ed25519',
    'sign',
    'never',
  ]);
  return home;
}

async function clearsign(gnupgHome: string, path: string): Promise<void> {
  await run('gpg', ['--homedir', gnupgHome, '--batch', '--yes', '--clearsign', '--output', `${path}.asc`, path]);
  await rename(`${path}.asc`, path);
}

function digest(algorithm: string, data: Buffer): string {
  return createHash(algorithm).update(data).digest('hex');
}

function fileLists(files: ReadonlyMap<string, Buffer>, section: string, priority: string): string {
  const lines = (algorithm: string, withSection: boolean) =>
    [...files]
      .map(([name, data]) => ` ${digest(algorithm, data)} ${data.length}${withSection ? ` ${section} ${priority}` : ''} ${name}`)
      .join('\n');
  return `Checksums-Sha1:\n${lines('sha1', false)}\nChecksums-Sha256:\n${lines('sha256', false)}\nFiles:\n${lines('md5', true)}\n`;
}

/** A job as the signer hands it to the uploader: files in the artifacts dir, and its manifest. */
export interface SignedJob {
  uuid: string;
  /** Source package name, unique per job (`hello<8 hex>`). */
  source: string;
  manifest: Manifest;
  /** Name → content of every artifact. */
  contents: Map<string, Buffer>;
  artifactsDir: string;
}

/** Options of {@link makeSignedJob}. */
export interface SignedJobOptions {
  repo?: string;
  result?: BuildResult;
  /** Bytes of the `.deb` (default 200 KiB of random data). */
  debSize?: number;
  /** Names the `.changes` lists besides the real files (for hostile-name tests). */
  extraChangesNames?: string[];
}

/**
 * Writes a signed package-build job into `<workspacesDir>/<uuid>/artifacts`:
 * source and binary files, a `.changes` listing them, the log and Firehose
 * report, and a `.dud` listing those; both control files clearsigned. A
 * `failure`/`depwait` result has no `.changes`, as an FTBFS has none. Also
 * writes the job log to `logsDir`.
 */
export async function makeSignedJob(
  gnupgHome: string,
  workspacesDir: string,
  logsDir: string,
  options: SignedJobOptions = {},
): Promise<SignedJob> {
  const uuid = randomUUID();
  // Each job its own source name: the archive refuses a file name it already has.
  const source = `hello${uuid.slice(0, 8)}`;
  const result = options.result ?? 'success';
  const dir = jobArtifactsDir(workspacesDir, { uuid, round: TEST_ROUND });
  await mkdir(dir, { recursive: true });
  const contents = new Map<string, Buffer>();
  const changesFiles = new Map<string, Buffer>();
  if (result === 'success') {
    changesFiles.set(`${source}_1.0-1.dsc`, Buffer.from('Format: 3.0 (quilt)\nSource: ${source}\nVersion: 1.0-1\n'));
    changesFiles.set(`${source}_1.0.orig.tar.gz`, randomBytes(30_000));
    changesFiles.set(`${source}_1.0-1.debian.tar.xz`, randomBytes(5_000));
    changesFiles.set(`${source}_1.0-1_amd64.deb`, randomBytes(options.debSize ?? 200 * 1024));
    changesFiles.set(`${source}_1.0-1_amd64.buildinfo`, Buffer.from('Format: 1.0\nSource: ${source}\n'));
  }
  const dudFiles = new Map<string, Buffer>([
    [`${source}_1.0-1_amd64.${uuid}.log`, Buffer.from('build log\n'.repeat(500))],
    [`${source}_1.0-1_amd64.${uuid}.firehose.xml`, Buffer.from('<analysis/>\n')],
  ]);
  for (const [name, data] of [...changesFiles, ...dudFiles]) {
    contents.set(name, data);
    await writeFile(join(dir, name), data);
  }
  let changes: string | null = null;
  if (result === 'success') {
    changes = `${source}_1.0-1_amd64.changes`;
    const listed = new Map(changesFiles);
    for (const extra of options.extraChangesNames ?? []) listed.set(extra, Buffer.from('x'));
    const text = `Format: 1.8\nDate: Thu, 26 Nov 2026 00:00:00 +0000\nSource: ${source}\nBinary: ${source}\nArchitecture: source amd64\nVersion: 1.0-1\nDistribution: bookworm\nUrgency: medium\nMaintainer: Spark Tests <spark-tests@example.org>\nChanged-By: Spark Tests <spark-tests@example.org>\nDescription:\n ${source} - test package\nChanges:\n ${source} (1.0-1) bookworm; urgency=medium\n .\n   * Test upload.\n${fileLists(listed, 'misc', 'optional')}`;
    await writeFile(join(dir, changes), text);
    await clearsign(gnupgHome, join(dir, changes));
    contents.set(changes, await readFile(join(dir, changes)));
  }
  const dud = `${source}_1.0-1_amd64.${uuid}.dud`;
  const dudText = `Format: 1.8\nDate: Thu, 26 Nov 2026 00:00:00 +0000\nSource: ${source}\nVersion: 1.0-1\nArchitecture: amd64\nX-Spark-Job: ${uuid}\nX-Spark-Result: ${result}\n${fileLists(dudFiles, 'spark', 'spark')}`;
  await writeFile(join(dir, dud), dudText);
  await clearsign(gnupgHome, join(dir, dud));
  contents.set(dud, await readFile(join(dir, dud)));
  await mkdir(logsDir, { recursive: true });
  await writeFile(jobLogFile(logsDir, { uuid, round: TEST_ROUND }), 'build log\n');
  const manifest: Manifest = {
    uuid,
    round: TEST_ROUND,
    repo: options.repo ?? 'master',
    result,
    files: [...contents].map(([name, data]) => ({ name, size: data.length, sha256: digest('sha256', data) })),
    changes,
    dud,
  };
  return { uuid, source, manifest, contents, artifactsDir: dir };
}

/**
 * The order the uploader sends a job's files in: dput-ng's (run for the
 * `.changes`, then the `.dud`), but with the `.changes` after the `.dud`'s
 * files, so both control files come last.
 */
export function expectedOrder(job: SignedJob): string[] {
  const names = [...job.contents.keys()];
  const changes = names.filter((n) => !n.includes(job.uuid) && !n.endsWith('.changes'));
  const dudFiles = names.filter((n) => n.includes(job.uuid) && !n.endsWith('.dud'));
  return [...changes, ...dudFiles, ...(job.manifest.changes ? [job.manifest.changes] : []), job.manifest.dud];
}
