import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { chmod, copyFile, link, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Queue, type Job } from 'bullmq';
import {
  archiveTargetsKey,
  jobArtifactsDir,
  jobRecordKey,
  jobSourceDir,
  jobWorkspaceDir,
  parseControlFile,
  parseFileList,
  QueueName,
  REPORT_QUEUES,
  reportJobId,
  stageJobId,
  jobRecordSchema,
  type JobRecord,
  type NewJobRecord,
  type Manifest,
  type ReportPayload,
  type UploadPayload,
} from '@spark/protocol';
import {
  connectRedis,
  createLogger,
  redisAclFile,
  redisLogin,
  redisPasswordFile,
  redisReady,
  REDIS_USERS,
  systemClock,
  type Redis,
  type RedisRoleName,
} from '@spark/service';
import { buildBinaryLocally, makeSourcePackage, randomQueuePrefix, startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import { AuditLogError, openAuditLog, type AuditEntry, type RefusalEntry, type SignatureEntry } from '../src/audit-log.js';
import { createSigner, type Signer } from '../src/signer.js';
import { openSignerRedis, type SignerRedis } from '../src/signer-redis.js';
import { loadSigningKey } from '@spark/keys/signing-key';
import { makeGpgHome, type GpgHome } from './gpg-home.js';

/*
 * A compromised builder owns the workspaces and writes the manifest, the
 * `.changes` and the `.dud` (docs/architecture.md, "Trust boundary"). Each case
 * here is one thing such a builder tries; each must be refused with a failed
 * report and an audit line, nothing signed, nothing written outside the job's
 * own artifacts — and an honest job after all of them still goes through.
 */

const R = '1764405000000';
const run = promisify(execFile);
const spec = { name: 'hello-hostile', version: '1.0' };
/** A source with an epoch, an arch-indep package and debhelper-style debug symbols: what honest builds also make. */
const multiSpec = { name: 'hello-multi', version: '1:2.0', indepPackage: 'hello-multi-doc', dbgsym: true };
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface Staged {
  manifest: Manifest;
  record: JobRecord;
  /** The round's workspace and its artifacts dir. */
  workspace: string;
  dir: string;
  /** The `.dsc` as the builder keeps it, in the workspace's source dir. */
  dsc: string;
}

/** One binary build of a source package: its `.dsc` and the `.changes` with every file it lists. */
interface Built {
  spec: { name: string; version: string };
  dsc: string;
  files: string[];
}

describe('a hostile builder against the signer', () => {
  let redis: RedisServer;
  let gpg: GpgHome;
  let tmp: string;
  let workspacesDir: string;
  let auditFile: string;
  let keyring: string;
  let binaryChanges: string[];
  let sourceChanges: string[];
  /** hello-hostile built as the other tests expect it (`dpkg-buildpackage -b`). */
  let hostile: Built;
  /** hello-multi built as debspawn's --only=binary, --only=arch and --only=indep build it. */
  let multi: Record<'binary' | 'arch' | 'indep', Built>;
  /** The connector's connection: writes the job records and the upload targets, as only it may. */
  let connector: Redis;
  /** The builder's connection, with the builder's credentials: all it can reach in Redis. */
  let builderRedis: Redis;
  /** The operator's read-only connection, to watch the queues. */
  let operator: Redis;
  let signQueue: Queue;
  let uploadQueue: Queue;
  let reportQueue: Queue;
  let signer: Signer;
  let signerRedis: SignerRedis;
  let prefix: string;
  /** Runs inside the signer after every check passed, before it signs: where a racing builder strikes. */
  let hook: (() => Promise<void>) | null = null;

  before(async () => {
    gpg = await makeGpgHome();
    tmp = await mkdtemp(join(tmpdir(), 'spark-hostile-'));
    // Redis as the install step sets it up: one ACL user per service, the default user off.
    prefix = randomQueuePrefix();
    const credentialsDir = join(tmp, 'redis-credentials');
    await mkdir(credentialsDir);
    const roles = Object.keys(REDIS_USERS) as RedisRoleName[];
    const passwords = Object.fromEntries(roles.map((role) => [role, randomUUID()])) as Record<RedisRoleName, string>;
    for (const role of roles) await writeFile(redisPasswordFile(credentialsDir, role), passwords[role], { mode: 0o400 });
    await writeFile(join(tmp, 'users.acl'), redisAclFile(prefix, passwords));
    redis = await startRedisServer({ args: ['--aclfile', join(tmp, 'users.acl')] });
    const as = async (role: RedisRoleName) => {
      const connection = connectRedis(redis.url, 'worker', redisLogin(credentialsDir, role));
      await redisReady(connection);
      return connection;
    };
    connector = await as('connector');
    builderRedis = await as('builder');
    operator = await as('operator');
    workspacesDir = join(tmp, 'root', 'workspaces');
    await mkdir(workspacesDir, { recursive: true });
    auditFile = join(tmp, 'signer-logs', 'signer.log');
    keyring = join(tmp, 'worker.gpg');
    const fingerprint = await gpg.generate({ uid: 'Spark Worker <worker@example.org>', algo: 'ed25519', usage: 'sign' });
    await gpg.exportSecret(fingerprint, join(tmp, 'worker_secret.gpg'));
    await gpg.exportKeyring([fingerprint], keyring);

    const pkgDir = join(tmp, 'pkg');
    await mkdir(pkgDir);
    const pkg = await makeSourcePackage(pkgDir, spec);
    const changes = await buildBinaryLocally(pkg, spec);
    const full = join(pkgDir, `${spec.name}_${spec.version}_source+amd64.changes`);
    await run('dpkg-genchanges', ['-sa', `-O${full}`], { cwd: join(pkgDir, `${spec.name}-${spec.version}`) });
    const listed = async (file: string) => [
      file,
      ...parseFileList(parseControlFile(await readFile(file, 'utf8')).paragraphs[0]?.get('Files')).map((entry) =>
        join(dirname(file), entry.name),
      ),
    ];
    binaryChanges = await listed(changes);
    sourceChanges = await listed(full);
    hostile = { spec, dsc: pkg.dsc, files: binaryChanges };
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
    multi = Object.fromEntries(multiBuilds) as Record<(typeof builds)[number], Built>;

    const quiet = new Writable({ write: (_chunk, _encoding, done) => done() });
    const logger = createLogger('spark-signer', quiet);
    // As main.ts puts the signer together: its queues and records on Redis, as the `signer` ACL user.
    signerRedis = openSignerRedis({ redisUrl: redis.url, queuePrefix: prefix, redisCredentialsDir: credentialsDir }, logger);
    signer = createSigner({
      config: { workspacesDir },
      logger,
      signingKey: await loadSigningKey({ keyFile: join(tmp, 'worker_secret.gpg'), keyId: fingerprint, passphraseFile: null }),
      audit: await openAuditLog(auditFile),
      signJobs: signerRedis.signJobs,
      uploads: signerRedis.uploads,
      reports: signerRedis.reports,
      records: signerRedis.records,
      clock: systemClock,
      ready: () => signerRedis.ready(),
      afterChecks: () => hook?.() ?? Promise.resolve(),
    });
    await signer.start();
    await connector.set(
      archiveTargetsKey(prefix),
      JSON.stringify({ archive_repos: { master: { upload_fqdn: 'archive.example.org/_upload', upload_method: 'https' } }, receivedAt: 1 }),
    );
    signQueue = new Queue(QueueName.sign, { connection: builderRedis, prefix });
    uploadQueue = new Queue(QueueName.upload, { connection: operator, prefix });
    reportQueue = new Queue(REPORT_QUEUES.signer, { connection: operator, prefix });
  });

  after(async () => {
    await signer.close();
    await signerRedis.close();
    await Promise.all([signQueue.close(), uploadQueue.close(), reportQueue.close()]);
    await Promise.all([connector.quit(), builderRedis.quit(), operator.quit()]);
    await redis.stop();
    await gpg.close();
    await rm(tmp, { recursive: true, force: true });
  });

  async function entryOf(dir: string, name: string) {
    const data = await readFile(join(dir, name));
    return { name, size: data.length, sha256: sha256(data) };
  }

  /**
   * An honest build's results in a new round's artifacts dir (the built files,
   * a log and a `.dud`), the job record the connector wrote for it, and the manifest.
   */
  async function stage(
    options: { build?: Built; files?: string[]; record?: Partial<JobRecord>; dudArchitecture?: string } = {},
  ): Promise<Staged> {
    const uuid = randomUUID();
    const workspace = jobWorkspaceDir(workspacesDir, { uuid, round: R });
    const dir = jobArtifactsDir(workspacesDir, { uuid, round: R });
    await mkdir(dir, { recursive: true });
    const build = options.build ?? hostile;
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
    await connector.set(jobRecordKey(prefix, uuid), JSON.stringify(record));
    return {
      manifest: { uuid, round: R, repo: 'master', result: 'success', files: entries, changes, dud: dudName },
      record,
      workspace,
      dir,
      dsc,
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
  async function replaceListed(staged: Staged, name: string, content: string | Buffer, newName = name): Promise<Manifest> {
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
  const listedName = (staged: Staged, suffix: string) =>
    staged.manifest.files.find((entry) => entry.name.endsWith(suffix))?.name ?? assert.fail(`no *${suffix}`);

  /** Edits the staged `.buildinfo` as a builder can, keeping the `.changes` and the manifest in step. */
  async function rewriteBuildinfo(staged: Staged, edit: (text: string) => string): Promise<Manifest> {
    const name = listedName(staged, '.buildinfo');
    return replaceListed(staged, name, edit(await readFile(join(staged.dir, name), 'utf8')));
  }

  /** Rewrites a control file as a builder can (it writes them), and the manifest entry with it. */
  async function rewrite(staged: Staged, name: string, edit: (text: string) => string): Promise<Manifest> {
    const path = join(staged.dir, name);
    await writeFile(path, edit(await readFile(path, 'utf8')));
    const entry = await entryOf(staged.dir, name);
    return { ...staged.manifest, files: staged.manifest.files.map((file) => (file.name === name ? entry : file)) };
  }

  const setField = (field: string, value: string) => (text: string) => {
    const pattern = new RegExp(`^${field}: .*$`, 'm');
    assert.match(text, pattern, `the file has a ${field} field`);
    return text.replace(pattern, `${field}: ${value}`);
  };

  function waitForJob<T>(queue: Queue, id: string): Promise<Job<T>> {
    return waitFor(`job ${id} in ${queue.name}`, async () => (await queue.getJob(id)) as Job<T> | undefined, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
  }

  async function auditLines(uuid: string): Promise<AuditEntry[]> {
    const lines = (await readFile(auditFile, 'utf8')).split('\n').filter((line) => line !== '');
    return lines.map((line) => JSON.parse(line) as AuditEntry).filter((entry) => entry.uuid === uuid);
  }

  /** Everything under `path`, as names and contents (links as their targets), to prove nothing changed. */
  async function snapshot(path: string): Promise<Map<string, string>> {
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

  /** Hands the manifest to the signer; expects a failed report saying `reason`, a refusal audit line, nothing signed. */
  async function expectRefused(manifest: Manifest, reason: RegExp): Promise<RefusalEntry> {
    await signQueue.add(QueueName.sign, { manifest }, { jobId: stageJobId(manifest, 'sign') });
    const report = await waitForJob<ReportPayload>(reportQueue, reportJobId(manifest, { kind: 'final' }));
    assert.equal(report.data.kind, 'failed');
    const text = (report.data as { reason: string }).reason;
    assert.match(text, /^signer refused the build results, nothing was signed: /);
    assert.match(text, reason);
    const audit = await auditLines(manifest.uuid);
    assert.deepEqual(
      audit.map((entry) => entry.event),
      ['refused'],
      'one refusal line, no signature',
    );
    const refusal = audit[0] as RefusalEntry;
    assert.equal(refusal.reason, text);
    assert.equal(await uploadQueue.getJob(stageJobId(manifest, 'upload')), undefined, 'nothing handed to upload');
    return refusal;
  }

  /** Runs `attempt` against a staged job and checks that nothing under the workspace root changed. */
  async function refusedUnchanged(staged: Staged, manifest: Manifest, reason: RegExp): Promise<void> {
    const before = await snapshot(tmp);
    await expectRefused(manifest, reason);
    const afterwards = await snapshot(tmp);
    afterwards.delete(join('signer-logs', 'signer.log'));
    before.delete(join('signer-logs', 'signer.log'));
    assert.deepEqual(afterwards, before, 'no file anywhere was created, changed or removed');
  }

  describe('Redis with the builder\u2019s credentials', () => {
    it('cannot write a job record that would make a foreign package its job', async () => {
      const staged = await stage();
      const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField('Source', 'openssh'));
      const forged = JSON.stringify({ ...staged.record, package: 'openssh' });
      await assert.rejects(builderRedis.set(jobRecordKey(prefix, staged.manifest.uuid), forged), /^ReplyError: NOPERM/);
      await assert.rejects(
        builderRedis.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, jobRecordKey(prefix, staged.manifest.uuid), forged),
        /^ReplyError: NOPERM/,
      );
      await refusedUnchanged(staged, manifest, /Source is "openssh", the job was handed out for "hello-hostile"$/);
    });

    it('cannot redirect uploads by rewriting the upload targets', async () => {
      await assert.rejects(
        builderRedis.set(archiveTargetsKey(prefix), JSON.stringify({ archive_repos: {}, receivedAt: 2 })),
        /^ReplyError: NOPERM/,
      );
      assert.match((await connector.get(archiveTargetsKey(prefix))) ?? '', /archive\.example\.org/);
    });

    it('cannot hand anything to the upload queue past the signer', async () => {
      const staged = await stage();
      const uploads = new Queue(QueueName.upload, { connection: builderRedis, prefix });
      try {
        await assert.rejects(
          uploads.add(QueueName.upload, { manifest: staged.manifest }, { jobId: stageJobId(staged.manifest, 'upload') }),
          /NOPERM/,
        );
      } finally {
        await uploads.close();
      }
      assert.equal(await uploadQueue.getJob(stageJobId(staged.manifest, 'upload')), undefined);
    });
  });

  describe('a job that is not the one Lighthouse handed out', () => {
    it('refuses a job the connector has no record of', async () => {
      const staged = await stage();
      await connector.del(jobRecordKey(prefix, staged.manifest.uuid));
      await refusedUnchanged(staged, staged.manifest, /job: no job record for [0-9a-f-]+: this worker's connector did not hand it out/);
    });

    it('refuses a round that is not the record\u2019s current round', async () => {
      const staged = await stage({ record: { round: String(Number(R) + 1) } });
      await refusedUnchanged(staged, staged.manifest, new RegExp(`job: round ${R} is not the job's current round \\(${Number(R) + 1}\\)$`));
    });

    it('refuses a manifest that sends the results to another repository', async () => {
      const staged = await stage();
      await refusedUnchanged(
        staged,
        { ...staged.manifest, repo: 'other' },
        /job: the manifest names repository other, the job was handed out for master$/,
      );
    });
  });

  describe('a .changes for something else', () => {
    const cases: { name: string; field: string; value: string; reason: RegExp }[] = [
      {
        name: 'another package',
        field: 'Source',
        value: 'openssh',
        reason: /Source is "openssh", the job was handed out for "hello-hostile"$/,
      },
      { name: 'another version', field: 'Version', value: '1:9.9-1', reason: /Version is "1:9.9-1", the job was handed out for "1.0"$/ },
      {
        name: 'another suite',
        field: 'Distribution',
        value: 'sid',
        reason: /Distribution is "sid", the job was handed out for "bookworm"$/,
      },
      {
        name: 'another architecture',
        field: 'Architecture',
        value: 'i386',
        reason: /Architecture names i386; a amd64 job may upload amd64, all$/,
      },
      {
        name: 'a source upload',
        field: 'Architecture',
        value: 'source amd64',
        reason: /Architecture names source; a amd64 job may upload amd64, all$/,
      },
    ];
    for (const testCase of cases) {
      it(`refuses a .changes for ${testCase.name}`, async () => {
        const staged = await stage();
        const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField(testCase.field, testCase.value));
        await refusedUnchanged(staged, manifest, testCase.reason);
      });
    }

    it('refuses arch-indep packages from a job without do_indep (debspawn --only=arch)', async () => {
      const staged = await stage({ record: { doIndep: false } });
      const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField('Architecture', 'amd64 all'));
      await refusedUnchanged(staged, manifest, /Architecture names all; a amd64 job without do_indep may upload amd64$/);
    });

    it('refuses amd64 packages from an arch-indep job (debspawn --only=indep)', async () => {
      const staged = await stage({ record: { architecture: 'all' }, dudArchitecture: 'all' });
      await refusedUnchanged(staged, staged.manifest, /Architecture names amd64; a all job may upload all$/);
    });

    it('refuses a .changes that carries the source, even when its Architecture hides it', async () => {
      const staged = await stage({ files: sourceChanges });
      const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField('Architecture', 'amd64'));
      await refusedUnchanged(
        staged,
        manifest,
        /lists hello-hostile_1\.0\.dsc: the builder builds binaries, this would be a source upload$/,
      );
    });
  });

  describe('a .dud for something else', () => {
    it('refuses a .dud of another job', async () => {
      const staged = await stage();
      const other = randomUUID();
      const manifest = await rewrite(staged, staged.manifest.dud, setField('X-Spark-Job', other));
      await refusedUnchanged(
        staged,
        manifest,
        new RegExp(`\\.dud: X-Spark-Job is "${other}", not this job \\(${staged.manifest.uuid}\\)$`),
      );
    });

    it('refuses an X-Spark-Result that is not success, failure or depwait', async () => {
      const staged = await stage();
      const manifest = await rewrite(staged, staged.manifest.dud, setField('X-Spark-Result', 'accepted'));
      await refusedUnchanged(staged, manifest, /\.dud: X-Spark-Result is "accepted", not one of success, failure, depwait$/);
    });

    it('refuses an X-Spark-Result that is not the manifest\u2019s result', async () => {
      const staged = await stage();
      const manifest = await rewrite(staged, staged.manifest.dud, setField('X-Spark-Result', 'failure'));
      await refusedUnchanged(staged, manifest, /\.dud: X-Spark-Result is failure, the manifest says success$/);
    });
  });

  describe('a .buildinfo that is not this build\u2019s (the signer would sign it with the archive key)', () => {
    it('refuses a .changes of another upload listed as the .buildinfo (a signing oracle)', async () => {
      const staged = await stage();
      // A source upload of this very package: signed by the worker key, the archive would take it.
      const sourceUpload = sourceChanges.find((file) => file.endsWith('.changes')) ?? assert.fail('no source .changes');
      const buildinfo = listedName(staged, '.buildinfo');
      const manifest = await replaceListed(staged, buildinfo, await readFile(sourceUpload));
      await refusedUnchanged(
        staged,
        manifest,
        new RegExp(`: ${escape(buildinfo)}: has a Files field: it is a \\.changes, \\.dsc or \\.dud, not a \\.buildinfo$`),
      );
    });

    const cases: { name: string; content: (staged: Staged, buildinfo: string) => Promise<string>; reason: RegExp }[] = [
      {
        name: 'a .dud of another job',
        content: async (staged) =>
          (await readFile(join(staged.dir, staged.manifest.dud), 'utf8')).replace(staged.manifest.uuid, randomUUID()),
        reason: /has a Files field: it is a \.changes, \.dsc or \.dud, not a \.buildinfo$/,
      },
      {
        name: 'a .changes stripped of its Files, made Format 1.0',
        content: async (staged) =>
          (await readFile(join(staged.dir, staged.manifest.changes ?? ''), 'utf8'))
            .replace(/^Files:\n( .*\n)+/m, '')
            .replace(/^Format: .*$/m, 'Format: 1.0'),
        reason: /has a Distribution field: it is a \.changes, \.dsc or \.dud, not a \.buildinfo$/,
      },
      {
        name: 'the .dsc of the source',
        content: (staged) => readFile(staged.dsc, 'utf8'),
        reason: /has a Files field: it is a \.changes, \.dsc or \.dud, not a \.buildinfo$/,
      },
      {
        name: 'a .buildinfo that says Format 1.8, as a .changes does',
        content: async (staged, buildinfo) => setField('Format', '1.8')(await readFile(join(staged.dir, buildinfo), 'utf8')),
        reason: /Format is "1\.8", not a \.buildinfo's \(1\.0\)$/,
      },
      {
        name: 'free text',
        content: () => Promise.resolve('I, the archive, vouch for whatever follows.\n'),
        reason: /is not a valid control file: line 1: expected "Field: value"/,
      },
      {
        name: 'two paragraphs',
        content: async (staged, buildinfo) => `${await readFile(join(staged.dir, buildinfo), 'utf8')}\nFormat: 1.8\nSource: coreutils\n`,
        reason: /has 2 paragraphs, expected one$/,
      },
    ];
    for (const testCase of cases) {
      it(`refuses ${testCase.name} listed as the .buildinfo`, async () => {
        const staged = await stage();
        const buildinfo = listedName(staged, '.buildinfo');
        const manifest = await replaceListed(staged, buildinfo, await testCase.content(staged, buildinfo));
        await refusedUnchanged(staged, manifest, new RegExp(`: ${escape(buildinfo)}: ${testCase.reason.source}`));
      });
    }

    const edits: { name: string; edit: (text: string) => string; reason: RegExp }[] = [
      { name: 'another source', edit: setField('Source', 'coreutils'), reason: /Source is coreutils, the job builds hello-hostile$/ },
      {
        name: 'another source version',
        edit: setField('Source', 'hello-hostile (0.9)'),
        reason: /Source is hello-hostile \(0\.9\), the job builds hello-hostile 1\.0$/,
      },
      { name: 'another version', edit: setField('Version', '9.9'), reason: /Version is 9\.9, the job builds hello-hostile 1\.0$/ },
      {
        name: 'an architecture the .changes does not upload',
        edit: setField('Architecture', 'amd64 i386'),
        reason: /Architecture names i386, hello-hostile_1\.0_amd64\.changes uploads amd64$/,
      },
      {
        name: 'a binary package the source does not build',
        edit: setField('Binary', 'hello-hostile coreutils'),
        reason: /Binary names coreutils, which hello-hostile does not build \(its \.dsc lists hello-hostile\)$/,
      },
      {
        name: 'checksums of a file outside the .changes',
        edit: (text) => text.replace(/^Checksums-Sha256:\n/m, `Checksums-Sha256:\n ${'c'.repeat(64)} 1234 coreutils_9.9_amd64.deb\n`),
        reason: /Checksums-Sha256 names coreutils_9\.9_amd64\.deb, which hello-hostile_1\.0_amd64\.changes does not upload$/,
      },
      {
        name: 'checksums of the .dud\u2019s log (a file of the job, but not of the .changes)',
        edit: (text) => text.replace(/^Checksums-Md5:\n/m, `Checksums-Md5:\n ${'0'.repeat(32)} 45 LOG\n`),
        reason: /Checksums-Md5 names [0-9a-f-]{36}\.log, which hello-hostile_1\.0_amd64\.changes does not upload$/,
      },
      {
        name: 'a checksum that is not the file\u2019s',
        edit: (text) => text.replace(/^(Checksums-Sha256:\n )[0-9a-f]{64}/m, `$1${'d'.repeat(64)}`),
        reason: /Checksums-Sha256 says d{64} \d+ for hello-hostile_1\.0_amd64\.deb, the file has [0-9a-f]{64} \d+$/,
      },
      {
        name: 'no checksums at all',
        edit: (text) => text.replace(/^Checksums-Sha256:\n( .*\n)+/m, 'Checksums-Sha256:\n'),
        reason: /Checksums-Sha256 names no file$/,
      },
      {
        name: 'no Build-Architecture',
        edit: (text) => text.replace(/^Build-Architecture: .*\n/m, ''),
        reason: /has no Build-Architecture field$/,
      },
    ];
    for (const testCase of edits) {
      it(`refuses a .buildinfo with ${testCase.name}`, async () => {
        const staged = await stage();
        const log = staged.manifest.files.find((entry) => entry.name.endsWith('.log'))?.name ?? '';
        const manifest = await rewriteBuildinfo(staged, (text) => testCase.edit(text).replace(' LOG\n', ` ${log}\n`));
        await refusedUnchanged(staged, manifest, new RegExp(`: hello-hostile_1\\.0_amd64\\.buildinfo: ${testCase.reason.source}`));
      });
    }
  });

  describe('packages the job\u2019s source does not build', () => {
    it('refuses a .changes whose Binary names a foreign package', async () => {
      const staged = await stage();
      const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField('Binary', 'hello-hostile coreutils'));
      await refusedUnchanged(
        staged,
        manifest,
        /: hello-hostile_1\.0_amd64\.changes: Binary names coreutils, which hello-hostile does not build \(its \.dsc lists hello-hostile\)$/,
      );
    });

    const renames: { name: string; to: string; reason: RegExp }[] = [
      {
        name: 'a foreign package',
        to: 'coreutils_9.9_amd64.deb',
        reason:
          /coreutils_9\.9_amd64\.deb: is a package of coreutils, which hello-hostile does not build \(its \.dsc lists hello-hostile\) \(listed in hello-hostile_1\.0_amd64\.changes\)$/,
      },
      {
        name: 'the debug symbols of a foreign package',
        to: 'coreutils-dbgsym_1.0_amd64.deb',
        reason: /coreutils-dbgsym_1\.0_amd64\.deb: is a package of coreutils-dbgsym, which hello-hostile does not build/,
      },
      {
        name: 'a foreign installer package (.udeb)',
        to: 'coreutils-udeb_1.0_amd64.udeb',
        reason: /coreutils-udeb_1\.0_amd64\.udeb: is a package of coreutils-udeb, which hello-hostile does not build/,
      },
      {
        name: 'another version of its own package',
        to: 'hello-hostile_9.9_amd64.deb',
        reason: /hello-hostile_9\.9_amd64\.deb: names version 9\.9, the job builds hello-hostile 1\.0 \(listed in/,
      },
      {
        name: 'an architecture the job does not build',
        to: 'hello-hostile_1.0_i386.deb',
        reason: /hello-hostile_1\.0_i386\.deb: names architecture i386; a amd64 job may upload amd64, all \(listed in/,
      },
      {
        name: 'a file named after another source',
        to: 'coreutils_1.0_amd64.tar.gz',
        reason: /coreutils_1\.0_amd64\.tar\.gz: names coreutils, the job builds hello-hostile \(listed in/,
      },
      {
        name: 'a file not named as dpkg names them',
        to: 'hello-hostile.deb',
        reason: /hello-hostile\.deb: is not named <package>_<version>_<architecture>\.<type> \(listed in/,
      },
    ];
    for (const testCase of renames) {
      it(`refuses a .changes whose Files list ${testCase.name}`, async () => {
        const staged = await stage();
        const deb = listedName(staged, '.deb');
        const manifest = await replaceListed(staged, deb, await readFile(join(staged.dir, deb)), testCase.to);
        await refusedUnchanged(staged, manifest, testCase.reason);
      });
    }

    it('refuses a .buildinfo named after another source', async () => {
      const staged = await stage();
      const buildinfo = listedName(staged, '.buildinfo');
      const manifest = await replaceListed(staged, buildinfo, await readFile(join(staged.dir, buildinfo)), 'coreutils_1.0_amd64.buildinfo');
      await refusedUnchanged(staged, manifest, /coreutils_1\.0_amd64\.buildinfo: names coreutils, the job builds hello-hostile/);
    });

    it('refuses a .dsc that is not the one Lighthouse handed out (its SHA-256 differs from the record)', async () => {
      const staged = await stage();
      // The builder writes its own .dsc, one whose Binary would make coreutils this source's package.
      await writeFile(staged.dsc, (await readFile(staged.dsc, 'utf8')).replace(/^Binary: (.*)$/m, 'Binary: $1, coreutils'));
      const manifest = await rewrite(staged, staged.manifest.changes ?? '', setField('Binary', 'hello-hostile coreutils'));
      await refusedUnchanged(
        staged,
        manifest,
        new RegExp(
          `: source/hello-hostile_1\\.0\\.dsc: SHA-256 is ${sha256(await readFile(staged.dsc))}, the job record says ${staged.record.dscSha256 ?? ''}: this is not the \\.dsc Lighthouse handed out$`,
        ),
      );
    });

    it('refuses a .dsc that is a link to one elsewhere', async () => {
      const staged = await stage();
      const elsewhere = join(tmp, `dsc-${staged.manifest.uuid}.dsc`);
      await rename(staged.dsc, elsewhere);
      await symlink(elsewhere, staged.dsc);
      await refusedUnchanged(
        staged,
        staged.manifest,
        /: source\/hello-hostile_1\.0\.dsc: is a symbolic link; only regular files in the workspace are signed$/,
      );
    });

    it('refuses when the builder left no .dsc', async () => {
      const staged = await stage();
      await rm(join(staged.workspace, 'source'), { recursive: true });
      await refusedUnchanged(
        staged,
        staged.manifest,
        /: source\/hello-hostile_1\.0\.dsc: missing from the job workspace: the signer needs the \.dsc to know the binary packages of the source$/,
      );
    });

    it('refuses a job whose record has no .dsc digest (written by an older connector), yet still reads that record', async () => {
      const staged = await stage();
      const old: Partial<JobRecord> = { ...staged.record };
      delete old.dscName;
      delete old.dscSha256;
      await connector.set(jobRecordKey(prefix, staged.manifest.uuid), JSON.stringify(old));
      const refusal = await expectRefused(
        staged.manifest,
        /: job: the job record names no \.dsc and its SHA-256 \(it was written by an older connector\), so the binary packages of the source are unknown; retry the job$/,
      );
      assert.deepEqual([refusal.package, refusal.version], [spec.name, spec.version], 'the old record was read');
    });
  });

  describe('files that are not plain files of the job', () => {
    it('refuses a file the manifest names but neither control file lists', async () => {
      const staged = await stage();
      await writeFile(join(staged.dir, 'extra.deb'), 'not listed anywhere');
      const manifest = { ...staged.manifest, files: [...staged.manifest.files, await entryOf(staged.dir, 'extra.deb')] };
      await refusedUnchanged(staged, manifest, /extra\.deb: is in the manifest but listed in neither the \.changes nor the \.dud$/);
    });

    it('refuses a hard link to a file elsewhere', async () => {
      const staged = await stage();
      const deb = staged.manifest.files.find((entry) => entry.name.endsWith('.deb'))?.name ?? assert.fail('no .deb');
      const elsewhere = join(tmp, `elsewhere-${staged.manifest.uuid}.deb`);
      await rename(join(staged.dir, deb), elsewhere);
      await link(elsewhere, join(staged.dir, deb));
      await refusedUnchanged(staged, staged.manifest, new RegExp(`${deb.replace(/[.+]/g, '\\$&')}: has 2 hard links`));
    });

    it('refuses a FIFO in place of a file, without hanging on it', async () => {
      const staged = await stage();
      const deb = staged.manifest.files.find((entry) => entry.name.endsWith('.deb'))?.name ?? assert.fail('no .deb');
      await rm(join(staged.dir, deb));
      await run('mkfifo', [join(staged.dir, deb)]);
      await refusedUnchanged(staged, staged.manifest, /: is not a regular file$/);
    });

    it('refuses an artifacts dir that is a link to a copy elsewhere', async () => {
      const staged = await stage();
      const elsewhere = join(tmp, `copy-${staged.manifest.uuid}`);
      await rename(staged.dir, elsewhere);
      await symlink(elsewhere, staged.dir);
      await refusedUnchanged(staged, staged.manifest, /artifacts: is not a directory \(a symbolic link or a file\); refusing it$/);
    });

    it('refuses a workspace that is a link to another directory', async () => {
      const staged = await stage();
      const elsewhere = join(tmp, `workspace-${staged.manifest.uuid}`);
      await rename(staged.workspace, elsewhere);
      await symlink(elsewhere, staged.workspace);
      await refusedUnchanged(staged, staged.manifest, /the job workspace: is not a directory \(a symbolic link or a file\); refusing it$/);
    });

    it('refuses a signer-originals planted as a link into the signer\u2019s own directory', async () => {
      const staged = await stage();
      await symlink(join(tmp, 'signer-logs'), join(staged.workspace, 'signer-originals'));
      await refusedUnchanged(staged, staged.manifest, /signer-originals: is not a directory \(a symbolic link or a file\); refusing it$/);
    });
  });

  describe('swaps between check and signature', () => {
    it('refuses when the artifacts dir is swapped for a link after the checks, writing nothing through the link', async () => {
      const staged = await stage();
      const decoy = join(tmp, `decoy-${staged.manifest.uuid}`);
      await mkdir(decoy);
      await writeFile(join(decoy, 'marker'), 'the builder wants the signer to write here');
      const moved = `${staged.dir}.moved`;
      hook = async () => {
        await rename(staged.dir, moved);
        await symlink(decoy, staged.dir);
      };
      try {
        const before = await snapshot(decoy);
        const beforeArtifacts = await snapshot(staged.dir);
        await expectRefused(staged.manifest, /artifacts: was moved to .*\.moved while the signer worked on it; refusing the job$/);
        assert.deepEqual(await snapshot(decoy), before, 'nothing written to where the link points');
        assert.deepEqual(await snapshot(moved), beforeArtifacts, 'the real artifacts are as the builder left them, nothing signed');
      } finally {
        hook = null;
      }
    });

    it('signs the checked bytes and replaces the link when the .changes is swapped for a link after the checks', async () => {
      const staged = await stage();
      const changes = staged.manifest.changes ?? assert.fail('no .changes');
      const victim = join(tmp, `victim-${staged.manifest.uuid}`);
      await writeFile(victim, 'a file the builder wants overwritten or signed\n');
      const checked = await readFile(join(staged.dir, changes), 'utf8');
      hook = async () => {
        await unlink(join(staged.dir, changes));
        await symlink(victim, join(staged.dir, changes));
      };
      try {
        await signQueue.add(QueueName.sign, { manifest: staged.manifest }, { jobId: stageJobId(staged.manifest, 'sign') });
        const signed = (await waitForJob<UploadPayload>(uploadQueue, stageJobId(staged.manifest, 'upload'))).data.manifest;
        assert.equal(await readFile(victim, 'utf8'), 'a file the builder wants overwritten or signed\n', 'the link target is untouched');
        const text = await readFile(join(staged.dir, changes), 'utf8');
        assert.ok(text.includes(checked.split('\nChecksums-Sha1:')[0] ?? ''), 'what was signed is the .changes that was checked');
        await run('gpgv', ['--keyring', keyring, join(staged.dir, changes)]);
        assert.equal(signed.files.find((entry) => entry.name === changes)?.sha256, sha256(Buffer.from(text)));
      } finally {
        hook = null;
      }
    });

    it('never writes through a link when the artifacts dir is swapped back and forth while jobs are signed', async () => {
      const outcomes: string[] = [];
      for (let i = 0; i < 6; i++) {
        const staged = await stage();
        const decoy = join(tmp, `race-decoy-${staged.manifest.uuid}`);
        await mkdir(decoy);
        for (const entry of staged.manifest.files) await copyFile(join(staged.dir, entry.name), join(decoy, entry.name));
        const decoyBefore = await snapshot(decoy);
        const real = `${staged.dir}.real`;
        let racing = true;
        const race = (async () => {
          while (racing) {
            await rename(staged.dir, real);
            await symlink(decoy, staged.dir);
            await sleep(i % 3);
            await unlink(staged.dir);
            await rename(real, staged.dir);
            await sleep(i % 2);
          }
        })();
        await signQueue.add(QueueName.sign, { manifest: staged.manifest }, { jobId: stageJobId(staged.manifest, 'sign') });
        const upload = stageJobId(staged.manifest, 'upload');
        const final = reportJobId(staged.manifest, { kind: 'final' });
        let outcome: string;
        try {
          outcome = await waitFor(
            `an upload job or a final report for ${staged.manifest.uuid}`,
            async () => ((await uploadQueue.getJob(upload)) ? 'signed' : (await reportQueue.getJob(final)) ? 'refused' : null),
            { timeoutMs: 15_000 },
          );
        } finally {
          racing = false;
          await race;
        }
        outcomes.push(outcome);
        assert.deepEqual(await snapshot(decoy), decoyBefore, 'nothing written where the link pointed');
        const events = (await auditLines(staged.manifest.uuid)).map((entry) => entry.event);
        if (outcome === 'signed') {
          assert.deepEqual(events, ['signed', 'signed', 'signed']);
          await run('gpgv', ['--keyring', keyring, join(staged.dir, staged.manifest.changes ?? '')]);
        } else {
          assert.equal(outcome, 'refused');
          assert.deepEqual(events, ['refused']);
          const report = (await reportQueue.getJob(final)) as Job<ReportPayload>;
          assert.match(
            (report.data as { reason: string }).reason,
            /artifacts: (was moved to|is not a directory|is missing|cannot be opened|is at )/,
          );
        }
      }
      assert.equal(outcomes.length, 6);
    });
  });

  describe('the audit log', () => {
    it('is not opened through a link', async () => {
      const dir = join(tmp, 'audit-link');
      await mkdir(dir, { mode: 0o700 });
      const target = join(tmp, 'planted-target.log');
      await writeFile(target, 'the builder reads this\n');
      await symlink(target, join(dir, 'signer.log'));
      await assert.rejects(openAuditLog(join(dir, 'signer.log')), (error: Error) => {
        assert.ok(error instanceof AuditLogError);
        assert.match(error.message, /signer\.log is a symbolic link; refusing to write through it$/);
        return true;
      });
      assert.equal(await readFile(target, 'utf8'), 'the builder reads this\n');
    });

    it('is not opened in a directory a builder could write to or replace', async () => {
      const dir = join(tmp, 'audit-shared');
      await mkdir(dir);
      await chmod(dir, 0o2770);
      await assert.rejects(
        openAuditLog(join(dir, 'signer.log')),
        /is writable by others \(mode 2770\); it must be the signer's alone \(0700\)$/,
      );
      const linked = join(tmp, 'audit-dir-link');
      await symlink(join(tmp, 'signer-logs'), linked);
      await assert.rejects(openAuditLog(join(linked, 'signer.log')), /audit-dir-link is a symbolic link; refusing to write through it$/);
    });

    it('keeps writing to the file it opened when the path is replaced', async () => {
      const dir = join(tmp, 'audit-replace');
      const file = join(dir, 'signer.log');
      const audit = await openAuditLog(file);
      const job = { uuid: randomUUID(), round: R, package: 'p', version: '1', distribution: 's', repository: 'master', uploadTarget: null };
      await audit.append({ event: 'refused', time: 'first', ...job, reason: 'one' });
      await rename(file, `${file}.hidden`);
      await writeFile(file, '');
      await audit.append({ event: 'refused', time: 'second', ...job, reason: 'two' });
      await audit.close();
      assert.equal(await readFile(file, 'utf8'), '', 'the planted file got nothing');
      const lines = (await readFile(`${file}.hidden`, 'utf8')).trim().split('\n');
      assert.deepEqual(
        lines.map((line) => (JSON.parse(line) as RefusalEntry).reason),
        ['one', 'two'],
      );
    });
  });

  describe('honest builds with more than one package', () => {
    const honest: {
      name: string;
      build: 'binary' | 'arch' | 'indep';
      record: Partial<JobRecord>;
      dudArchitecture?: string;
      debs: string[];
    }[] = [
      {
        name: 'arch and indep (--only=binary): an _all.deb and -dbgsym besides the package',
        build: 'binary',
        record: {},
        debs: ['hello-multi-dbgsym_2.0_amd64.deb', 'hello-multi-doc_2.0_all.deb', 'hello-multi_2.0_amd64.deb'],
      },
      {
        name: 'arch only (--only=arch, no do_indep): the package and its -dbgsym',
        build: 'arch',
        record: { doIndep: false },
        debs: ['hello-multi-dbgsym_2.0_amd64.deb', 'hello-multi_2.0_amd64.deb'],
      },
      {
        name: 'an arch-indep job (--only=indep): the _all.deb and an _all.buildinfo',
        build: 'indep',
        record: { architecture: 'all' },
        dudArchitecture: 'all',
        debs: ['hello-multi-doc_2.0_all.deb'],
      },
    ];
    for (const testCase of honest) {
      it(`signs ${testCase.name}, each signature good for gpgv, the .buildinfo text as dpkg wrote it`, async () => {
        const staged = await stage({ build: multi[testCase.build], record: testCase.record, dudArchitecture: testCase.dudArchitecture });
        const buildinfo = listedName(staged, '.buildinfo');
        const written = await readFile(join(staged.dir, buildinfo), 'utf8');
        await signQueue.add(QueueName.sign, { manifest: staged.manifest }, { jobId: stageJobId(staged.manifest, 'sign') });
        const signed = (await waitForJob<UploadPayload>(uploadQueue, stageJobId(staged.manifest, 'upload'))).data.manifest;
        assert.deepEqual(
          signed.files.map((entry) => entry.name).filter((name) => name.endsWith('.deb')),
          testCase.debs,
        );
        for (const name of [signed.changes ?? assert.fail('no .changes'), buildinfo, signed.dud]) {
          const { stderr } = await run('gpgv', ['--keyring', keyring, join(staged.dir, name)]);
          assert.match(stderr, /Good signature from "Spark Worker <worker@example.org>"/, name);
        }
        const text = parseControlFile(await readFile(join(staged.dir, buildinfo), 'utf8')).clearsigned?.text;
        assert.equal(text, written, 'the signed .buildinfo says what dpkg-genbuildinfo wrote');
        const { stdout } = await run('dscverify', ['--no-conf', '--no-default-keyrings', '--keyring', keyring, signed.changes ?? ''], {
          cwd: staged.dir,
        });
        assert.match(stdout, /All files validated successfully\./);
        assert.deepEqual(
          (await auditLines(staged.manifest.uuid)).map((entry) => entry.event),
          ['signed', 'signed', 'signed'],
        );
      });
    }
  });

  it('still signs an honest job after all of that, naming the job in every audit line', async () => {
    const staged = await stage();
    await signQueue.add(QueueName.sign, { manifest: staged.manifest }, { jobId: stageJobId(staged.manifest, 'sign') });
    const signed = (await waitForJob<UploadPayload>(uploadQueue, stageJobId(staged.manifest, 'upload'))).data.manifest;
    for (const name of [signed.changes ?? assert.fail('no .changes'), signed.dud]) {
      const { stderr } = await run('gpgv', ['--keyring', keyring, join(staged.dir, name)]);
      assert.match(stderr, /Good signature from "Spark Worker <worker@example.org>"/);
    }
    const audit = (await auditLines(staged.manifest.uuid)) as SignatureEntry[];
    assert.equal(audit.length, 3);
    for (const entry of audit) {
      assert.equal(entry.event, 'signed');
      assert.deepEqual(
        [entry.package, entry.version, entry.distribution, entry.repository, entry.uploadTarget, entry.round],
        [spec.name, spec.version, 'bookworm', 'master', 'https://archive.example.org/_upload', R],
      );
    }
  });
});
