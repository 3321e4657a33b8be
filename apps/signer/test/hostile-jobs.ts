import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import {
  jobArtifactsDir,
  jobRecordSchema,
  jobSourceDir,
  jobWorkspaceDir,
  parseControlFile,
  parseFileList,
  type JobRecord,
  type Manifest,
  type NewJobRecord,
} from '@spark/protocol';
import { buildBinaryLocally, makeSourcePackage } from '@spark/testing';
import type { AuditEntry } from '../src/audit-log.js';

/*
 * Build results staged as the builder leaves them for the signer, and the
 * edits a hostile builder makes to them: shared by signer.test.ts (signing
 * honest results), hostile-builder.test.ts (the signer's checks, on in-memory
 * queues and records) and builder-redis-acl.test.ts (what the builder's Redis
 * credentials cannot do, on a real redis-server).
 */

/** The round of every job these tests hand the signer. */
export const R = '1764405000000';
export const run = promisify(execFile);
export const spec = { name: 'hello-hostile', version: '1.0' };
/** A source with an epoch, an arch-indep package and debhelper-style debug symbols: what honest builds also make. */
export const multiSpec = { name: 'hello-multi', version: '1:2.0', indepPackage: 'hello-multi-doc', dbgsym: true };
export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
export const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export interface Staged {
  manifest: Manifest;
  record: JobRecord;
  /** The round's workspace and its artifacts dir. */
  workspace: string;
  dir: string;
  /** The `.dsc` as the builder keeps it, in the workspace's source dir. */
  dsc: string;
}

/** One binary build of a source package: its `.dsc` and the `.changes` with every file it lists. */
export interface Built {
  spec: { name: string; version: string };
  dsc: string;
  files: string[];
}

/** The `.changes` at `file` and every file its `Files` lists. */
export async function listed(file: string): Promise<string[]> {
  return [
    file,
    ...parseFileList(parseControlFile(await readFile(file, 'utf8')).paragraphs[0]?.get('Files')).map((entry) =>
      join(dirname(file), entry.name),
    ),
  ];
}

/**
 * hello-hostile built in `pkgDir` as the tests expect it (`dpkg-buildpackage -b`),
 * and the files of a source+binary `.changes` of it (`dpkg-genchanges -sa`).
 */
export async function buildHostile(pkgDir: string): Promise<{ hostile: Built; sourceChanges: string[] }> {
  await mkdir(pkgDir);
  const pkg = await makeSourcePackage(pkgDir, spec);
  const changes = await buildBinaryLocally(pkg, spec);
  const full = join(pkgDir, `${spec.name}_${spec.version}_source+amd64.changes`);
  await run('dpkg-genchanges', ['-sa', `-O${full}`], { cwd: join(pkgDir, `${spec.name}-${spec.version}`) });
  return { hostile: { spec, dsc: pkg.dsc, files: await listed(changes) }, sourceChanges: await listed(full) };
}

/** hello-multi built under `tmp` as debspawn's --only=binary, --only=arch and --only=indep build it. */
export async function buildMulti(tmp: string): Promise<Record<'binary' | 'arch' | 'indep', Built>> {
  const builds = ['binary', 'arch', 'indep'] as const;
  const multiBuilds = await Promise.all(
    builds.map(async (only) => {
      const dir = join(tmp, `multi-${only}`);
      await mkdir(dir);
      const source = await makeSourcePackage(dir, multiSpec);
      const built: Built = { spec: multiSpec, dsc: source.dsc, files: await listed(await buildBinaryLocally(source, multiSpec, only)) };
      return [only, built] as const;
    }),
  );
  return Object.fromEntries(multiBuilds) as Record<(typeof builds)[number], Built>;
}

export async function entryOf(dir: string, name: string) {
  const data = await readFile(join(dir, name));
  return { name, size: data.length, sha256: sha256(data) };
}

/** Options of a staged job: its uuid, another build, other files of it, record fields, the `.dud`'s Architecture. */
export interface StageOptions {
  uuid?: string;
  build?: Built;
  files?: string[];
  record?: Partial<JobRecord>;
  dudArchitecture?: string;
}

/**
 * Stages jobs under `workspacesDir`: an honest build's results (of
 * `defaultBuild` unless told otherwise) in a new round's artifacts dir (the
 * built files, a log and a `.dud`), the job record handed to `writeRecord` as
 * the connector writes it, and the manifest.
 */
export function jobStager(
  workspacesDir: string,
  defaultBuild: () => Built,
  writeRecord: (record: JobRecord) => Promise<void>,
): (options?: StageOptions) => Promise<Staged> {
  return async (options = {}) => {
    const uuid = options.uuid ?? randomUUID();
    const workspace = jobWorkspaceDir(workspacesDir, { uuid, round: R });
    const dir = jobArtifactsDir(workspacesDir, { uuid, round: R });
    await mkdir(dir, { recursive: true });
    const build = options.build ?? defaultBuild();
    const files = options.files ?? build.files;
    for (const file of files) await copyFile(file, join(dir, basename(file)));
    // The .dsc the builder fetched (and verified against the job's SHA-256), kept for the signer.
    const sourceDir = jobSourceDir(workspacesDir, { uuid, round: R });
    await mkdir(sourceDir);
    const dsc = join(sourceDir, basename(build.dsc));
    await copyFile(build.dsc, dsc);
    const logName = `${uuid}.log`;
    const log = Buffer.from('dpkg-buildpackage: info: binary-only upload\n');
    await writeFile(join(dir, logName), log);
    const md5 = createHash('md5').update(log).digest('hex');
    const sha1 = createHash('sha1').update(log).digest('hex');
    const dudName = `${uuid}.dud`;
    await writeFile(
      join(dir, dudName),
      [
        'Format: 1.8',
        'Date: Thu, 26 Nov 2026 00:00:00 -0000',
        `Architecture: ${options.dudArchitecture ?? 'amd64'}`,
        `X-Spark-Job: ${uuid}`,
        'X-Spark-Result: success',
        'Files:',
        ` ${md5} ${log.length} spark spark ${logName}`,
        'Checksums-Sha1:',
        ` ${sha1} ${log.length} ${logName}`,
        'Checksums-Sha256:',
        ` ${sha256(log)} ${log.length} ${logName}`,
        '',
      ].join('\n'),
    );
    const names = [...files.map((file) => basename(file)), logName, dudName];
    const entries = await Promise.all(names.map((name) => entryOf(dir, name)));
    const changes = names.find((name) => name.endsWith('.changes')) ?? null;
    const written: NewJobRecord = {
      uuid,
      round: R,
      kind: 'package-build',
      architecture: 'amd64',
      repo: 'master',
      package: build.spec.name,
      version: build.spec.version,
      suite: 'bookworm',
      doIndep: true,
      dscName: basename(build.dsc),
      dscSha256: sha256(await readFile(build.dsc)),
      receivedAt: Number(R),
      ...options.record,
    };
    const record = jobRecordSchema.parse(written);
    await writeRecord(record);
    return {
      manifest: { uuid, round: R, repo: 'master', result: 'success', files: entries, changes, dud: dudName },
      record,
      workspace,
      dir,
      dsc,
    };
  };
}

const DIGEST_OF_LIST: Record<string, 'md5' | 'sha1' | 'sha256'> = {
  Files: 'md5',
  'Checksums-Sha1': 'sha1',
  'Checksums-Sha256': 'sha256',
};

/**
 * Puts `content` in the artifacts dir as `newName` in place of the listed file
 * `name`, and rewrites the `.changes` lists and the manifest to match, as a
 * builder can (it writes both): only the checks on the content itself are left.
 */
export async function replaceListed(staged: Staged, name: string, content: string | Buffer, newName = name): Promise<Manifest> {
  const data = Buffer.from(content);
  const digests = {
    md5: createHash('md5').update(data).digest('hex'),
    sha1: createHash('sha1').update(data).digest('hex'),
    sha256: sha256(data),
  };
  await rm(join(staged.dir, name));
  await writeFile(join(staged.dir, newName), data);
  const changes = staged.manifest.changes ?? assert.fail('no .changes');
  let field = '';
  const lines = (await readFile(join(staged.dir, changes), 'utf8')).split('\n').map((line) => {
    const fieldName = /^([A-Za-z0-9-]+):/.exec(line)?.[1];
    if (fieldName !== undefined) field = fieldName;
    const entry = /^ (\S+) (\d+) (.*)$/.exec(line);
    const kind = DIGEST_OF_LIST[field];
    if (!entry || !kind || !line.endsWith(` ${name}`)) return line;
    const rest = (entry[3] ?? '').slice(0, -name.length);
    return ` ${digests[kind]} ${data.length} ${rest}${newName}`;
  });
  await writeFile(join(staged.dir, changes), lines.join('\n'));
  const renamed = { ...staged.manifest, files: staged.manifest.files.filter((file) => file.name !== name) };
  renamed.files.push({ name: newName, size: data.length, sha256: digests.sha256 });
  const changesEntry = await entryOf(staged.dir, changes);
  return { ...renamed, files: renamed.files.map((file) => (file.name === changes ? changesEntry : file)) };
}

/** The staged job's file whose name ends in `suffix`. */
export const listedName = (staged: Staged, suffix: string) =>
  staged.manifest.files.find((entry) => entry.name.endsWith(suffix))?.name ?? assert.fail(`no *${suffix}`);

/** Edits the staged `.buildinfo` as a builder can, keeping the `.changes` and the manifest in step. */
export async function rewriteBuildinfo(staged: Staged, edit: (text: string) => string): Promise<Manifest> {
  const name = listedName(staged, '.buildinfo');
  return replaceListed(staged, name, edit(await readFile(join(staged.dir, name), 'utf8')));
}

/** Rewrites a control file as a builder can (it writes them), and the manifest entry with it. */
export async function rewrite(staged: Staged, name: string, edit: (text: string) => string): Promise<Manifest> {
  const path = join(staged.dir, name);
  await writeFile(path, edit(await readFile(path, 'utf8')));
  const entry = await entryOf(staged.dir, name);
  return { ...staged.manifest, files: staged.manifest.files.map((file) => (file.name === name ? entry : file)) };
}

export const setField = (field: string, value: string) => (text: string) => {
  const pattern = new RegExp(`^${field}: .*$`, 'm');
  assert.match(text, pattern, `the file has a ${field} field`);
  return text.replace(pattern, `${field}: ${value}`);
};

/** The lines of the audit log at `auditFile` about job `uuid`. */
export async function auditLines(auditFile: string, uuid: string): Promise<AuditEntry[]> {
  const lines = (await readFile(auditFile, 'utf8')).split('\n').filter((line) => line !== '');
  return lines.map((line) => JSON.parse(line) as AuditEntry).filter((entry) => entry.uuid === uuid);
}

/** Everything under `path`, as names and contents (links as their targets), to prove nothing changed. */
export async function snapshot(path: string): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  const walk = async (dir: string, rel: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const full = join(dir, entry.name);
      const key = join(rel, entry.name);
      if (entry.isDirectory()) {
        seen.set(key, 'dir');
        await walk(full, key);
      } else if (entry.isSymbolicLink()) {
        seen.set(key, `link`);
      } else if (entry.isFile()) {
        seen.set(key, sha256(await readFile(full)));
      } else {
        seen.set(key, 'special');
      }
    }
  };
  await walk(path, '');
  return seen;
}
