import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Queue, type Job } from 'bullmq';
import {
  archiveTargetsKey,
  jobRecordKey,
  QueueName,
  REPORT_QUEUES,
  reportJobId,
  stageJobId,
  type Manifest,
  type ReportPayload,
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
import { randomQueuePrefix, startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import { openAuditLog, type RefusalEntry } from '../src/audit-log.js';
import { createSigner, type Signer } from '../src/signer.js';
import { openSignerRedis, type SignerRedis } from '../src/signer-redis.js';
import { loadSigningKey } from '@spark/keys/signing-key';
import { makeGpgHome, type GpgHome } from './gpg-home.js';
import { auditLines, buildHostile, jobStager, rewrite, setField, snapshot, type Built, type Staged } from './hostile-jobs.js';

/*
 * What a compromised builder cannot do with its own Redis credentials: Redis
 * set up as the install step does (one ACL user per service, the default user
 * off), the signer on BullMQ as main.ts puts it together, as the `signer` user.
 * The signer's checks of what the builder hands it are hostile-builder.test.ts's.
 */
describe('a hostile builder against the signer, with its Redis credentials', () => {
  let redis: RedisServer;
  let gpg: GpgHome;
  let tmp: string;
  let auditFile: string;
  /** hello-hostile built as the other tests expect it (`dpkg-buildpackage -b`). */
  let hostile: Built;
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
  let stage: () => Promise<Staged>;

  before(async () => {
    gpg = await makeGpgHome();
    tmp = await mkdtemp(join(tmpdir(), 'spark-hostile-acl-'));
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
    const workspacesDir = join(tmp, 'root', 'workspaces');
    await mkdir(workspacesDir, { recursive: true });
    auditFile = join(tmp, 'signer-logs', 'signer.log');
    const fingerprint = await gpg.generate({ uid: 'Spark Worker <worker@example.org>', algo: 'ed25519', usage: 'sign' });
    await gpg.exportSecret(fingerprint, join(tmp, 'worker_secret.gpg'));

    ({ hostile } = await buildHostile(join(tmp, 'pkg')));
    stage = jobStager(
      workspacesDir,
      () => hostile,
      (record) => connector.set(jobRecordKey(prefix, record.uuid), JSON.stringify(record)).then(() => undefined),
    );

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

  function waitForJob<T>(queue: Queue, id: string): Promise<Job<T>> {
    return waitFor(`job ${id} in ${queue.name}`, async () => (await queue.getJob(id)) as Job<T> | undefined, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
  }

  /** Hands the manifest to the signer; expects a failed report saying `reason`, a refusal audit line, nothing signed. */
  async function expectRefused(manifest: Manifest, reason: RegExp): Promise<RefusalEntry> {
    await signQueue.add(QueueName.sign, { manifest }, { jobId: stageJobId(manifest, 'sign') });
    const report = await waitForJob<ReportPayload>(reportQueue, reportJobId(manifest, { kind: 'final' }));
    assert.equal(report.data.kind, 'failed');
    const text = (report.data as { reason: string }).reason;
    assert.match(text, /^signer refused the build results, nothing was signed: /);
    assert.match(text, reason);
    const audit = await auditLines(auditFile, manifest.uuid);
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
      const before = await snapshot(tmp);
      const refusal = await expectRefused(manifest, /Source is "openssh", the job was handed out for "hello-hostile"$/);
      // The signer, as the `signer` user, read the record and the upload target the connector wrote.
      assert.deepEqual([refusal.package, refusal.uploadTarget], ['hello-hostile', 'https://archive.example.org/_upload']);
      const afterwards = await snapshot(tmp);
      afterwards.delete(join('signer-logs', 'signer.log'));
      before.delete(join('signer-logs', 'signer.log'));
      assert.deepEqual(afterwards, before, 'no file anywhere was created, changed or removed');
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
});
