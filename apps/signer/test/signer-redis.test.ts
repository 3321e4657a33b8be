import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Queue, type Job } from 'bullmq';
import { QueueName, REPORT_QUEUES, reportJobId, signerRoundKey, stageJobId, type ReportPayload } from '@spark/protocol';
import { connectRedis, createLogger, systemClock, type Redis } from '@spark/service';
import { randomQueuePrefix, startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import { loadSigningKey } from '@spark/keys/signing-key';
import { openAuditLog, type AuditEntry } from '../src/audit-log.js';
import { createSigner, type Signer } from '../src/signer.js';
import { openSignerRedis, type SignerRedis } from '../src/signer-redis.js';
import { makeGpgHome, type GpgHome } from './gpg-home.js';

const R = '1764405000000';

/*
 * The signer as main.ts puts it together: its queues and records on BullMQ
 * and a real redis-server (signer-redis.ts). What signer.test.ts checks on
 * in-memory queues is the signer's logic; this is what crosses processes.
 */
describe('spark-signer on BullMQ and Redis', () => {
  let redis: RedisServer;
  let gpg: GpgHome;
  let tmp: string;
  let auditFile: string;
  let parts: SignerRedis;
  let signer: Signer;
  let connection: Redis;
  let signQueue: Queue;
  let uploadQueue: Queue;
  let reportQueue: Queue;
  let prefix: string;

  before(async () => {
    redis = await startRedisServer();
    gpg = await makeGpgHome();
    tmp = await mkdtemp(join(tmpdir(), 'spark-signer-redis-'));
    auditFile = join(tmp, 'audit', 'signer.log');
    const fingerprint = await gpg.generate({ uid: 'Spark Worker <worker@example.org>', algo: 'ed25519', usage: 'sign' });
    await gpg.exportSecret(fingerprint, join(tmp, 'worker_secret.gpg'));
    prefix = randomQueuePrefix();
    const logger = createLogger('spark-signer', new Writable({ write: (_chunk, _encoding, done) => done() }));
    parts = openSignerRedis({ redisUrl: redis.url, queuePrefix: prefix }, logger);
    signer = createSigner({
      config: { workspacesDir: join(tmp, 'workspaces') },
      logger,
      signingKey: await loadSigningKey({ keyFile: join(tmp, 'worker_secret.gpg'), keyId: fingerprint, passphraseFile: null }),
      audit: await openAuditLog(auditFile),
      signJobs: parts.signJobs,
      uploads: parts.uploads,
      reports: parts.reports,
      records: parts.records,
      clock: systemClock,
      ready: () => parts.ready(),
    });
    await signer.start();
    connection = connectRedis(redis.url, 'worker');
    signQueue = new Queue(QueueName.sign, { connection, prefix });
    uploadQueue = new Queue(QueueName.upload, { connection, prefix });
    reportQueue = new Queue(REPORT_QUEUES.signer, { connection, prefix });
  });

  after(async () => {
    await signer.close();
    await parts.close();
    await Promise.all([signQueue.close(), uploadQueue.close(), reportQueue.close()]);
    await connection.quit();
    await redis.stop();
    await gpg.close();
    await rm(tmp, { recursive: true, force: true });
  });

  const waitForJob = <T>(queue: Queue, id: string): Promise<Job<T>> =>
    waitFor(`job ${id} in ${queue.name}`, async () => (await queue.getJob(id)) as Job<T> | undefined, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });

  /** A manifest whose files the signer never reaches (it fails before, or refuses it). */
  const manifestOf = (uuid: string) => ({
    uuid,
    round: R,
    repo: 'master',
    result: 'success',
    files: [{ name: 'hello_1.0_amd64.dud', size: 1, sha256: '0'.repeat(64) }],
    changes: null,
    dud: 'hello_1.0_amd64.dud',
  });

  it('notes the round it takes in Redis, reports a refusal in its report queue and fails the BullMQ job', async () => {
    const uuid = randomUUID();
    const id = stageJobId({ uuid, round: R }, 'sign');
    await signQueue.add(QueueName.sign, { manifest: { ...manifestOf(uuid), dud: '../escape.dud' } }, { jobId: id });
    const report = await waitForJob<ReportPayload>(reportQueue, reportJobId({ uuid, round: R }, { kind: 'final' }));
    assert.equal(report.data.kind, 'failed');
    assert.match((report.data as { reason: string }).reason, /^signer refused the sign job: invalid payload: manifest\.dud: /);
    assert.equal(await connection.get(signerRoundKey(prefix, uuid)), R, 'the round is the signer’s: the relay takes no rejection of it');
    await waitFor(`sign job ${id} failed`, async () => (await signQueue.getJobState(id)) === 'failed' || undefined, {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const lines = (await readFile(auditFile, 'utf8')).split('\n').filter((line) => line !== '');
    const refusals = lines.map((line) => JSON.parse(line) as AuditEntry).filter((entry) => entry.uuid === uuid);
    assert.deepEqual(
      refusals.map((entry) => entry.event),
      ['refused'],
    );
  });

  it('reports failed a sign job BullMQ failed because signers were killed while signing it too often', async () => {
    const manifest = manifestOf(randomUUID());
    const id = stageJobId(manifest, 'sign');
    await signQueue.pause();
    await signQueue.add(QueueName.sign, { manifest }, { jobId: id });
    // What BullMQ's stalled-job check writes once a job stalled more than maxStalledCount times.
    await connection.hset(signQueue.toKey(id), 'defa', 'job stalled more than allowable limit');
    await signQueue.resume();
    const report = await waitForJob<ReportPayload>(reportQueue, reportJobId(manifest, { kind: 'final' }));
    assert.equal(report.data.kind, 'failed');
    assert.equal((report.data as { reason: string }).reason, 'the signer could not finish the job: job stalled more than allowable limit');
    assert.equal(await uploadQueue.getJob(stageJobId(manifest, 'upload')), undefined, 'nothing handed to upload');
  });
});
