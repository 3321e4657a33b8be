import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { archiveTargetsKey, jobRecordKey, REPORT_QUEUES, reportJobId, type ArchiveTarget, type NewJobRecord } from '@spark/protocol';
import { connectRedis, lastStatusSeq, redisReady, type Redis } from '@spark/service';
import { FakeQueue, randomQueuePrefix, startRedisServer, type RedisServer } from '@spark/testing';
import type { UploaderReports } from '../src/upload-job.js';
import { redisUploadRecords, type UploadRecords } from '../src/upload-records.js';
import { NoUploadTargetError } from '../src/upload-target.js';
import { fakeUploaderReports, FakeUploadRecords } from './fake-upload-records.js';

/*
 * The contract of the uploader's records and report queue (src/upload-records.ts,
 * UploaderReports in src/upload-job.ts): the same cases run on a real
 * redis-server and on the in-memory ones not-as-signed.test.ts uses
 * (fake-upload-records.ts), so that test relies on nothing Redis does not do.
 */

interface Subject {
  records: UploadRecords;
  reports: UploaderReports;
  write(record: NewJobRecord): Promise<void>;
  setTargets(repos: Record<string, ArchiveTarget>): Promise<void>;
  close(): Promise<void>;
}

const R = '1764405000000';
const target: ArchiveTarget = { upload_fqdn: 'archive.example.org/_upload', upload_method: 'https' };
const recordOf = (uuid: string): NewJobRecord => ({
  uuid,
  round: R,
  kind: 'package-build',
  architecture: 'amd64',
  repo: 'master',
  package: null,
  version: null,
  suite: 'bookworm',
  receivedAt: Number(R),
});

for (const kind of ['Redis', 'in memory'] as const) {
  describe(`uploader records: ${kind}`, () => {
    let server: RedisServer | null = null;
    let redis: Redis | null = null;

    before(async () => {
      if (kind !== 'Redis') return;
      server = await startRedisServer();
      redis = connectRedis(server.url, 'worker');
      await redisReady(redis);
    });
    after(async () => {
      await redis?.quit();
      await server?.stop();
    });

    const open = (): Subject => {
      if (redis) {
        const connection = redis;
        const prefix = randomQueuePrefix();
        const queue = new Queue(REPORT_QUEUES.uploader, { connection, prefix });
        return {
          records: redisUploadRecords(connection, prefix),
          reports: { add: (name, data, options) => queue.add(name, data, options), lastStatusSeq: (round) => lastStatusSeq(queue, round) },
          write: async (record) => void (await connection.set(jobRecordKey(prefix, record.uuid), JSON.stringify(record))),
          setTargets: async (repos) =>
            void (await connection.set(archiveTargetsKey(prefix), JSON.stringify({ archive_repos: repos, receivedAt: 1 }))),
          close: () => queue.close(),
        };
      }
      const records = new FakeUploadRecords();
      return {
        records,
        reports: fakeUploaderReports(new FakeQueue()),
        write: (record) => Promise.resolve(records.write(record)),
        setTargets: (repos) => Promise.resolve(void (records.targets = repos)),
        close: () => Promise.resolve(),
      };
    };

    it('reads the job record written, null for another job', async () => {
      const subject = open();
      try {
        const uuid = randomUUID();
        await subject.write(recordOf(uuid));
        assert.deepEqual(await subject.records.read(uuid.toUpperCase()), await subject.records.read(uuid), 'the uuid in any case');
        assert.equal((await subject.records.read(uuid))?.round, R);
        assert.equal(await subject.records.read(randomUUID()), null);
      } finally {
        await subject.close();
      }
    });

    it('gives the target of a repository, and says why there is none', async () => {
      const subject = open();
      try {
        await assert.rejects(subject.records.target('master'), (error: unknown) => {
          assert.ok(error instanceof NoUploadTargetError);
          assert.match(error.message, /^no upload targets known yet/);
          return true;
        });
        await subject.setTargets({ master: target });
        assert.deepEqual(await subject.records.target('master'), target);
        await assert.rejects(
          subject.records.target('extra'),
          (error: unknown) =>
            error instanceof NoUploadTargetError &&
            error.message === 'Lighthouse names no upload target for repository extra (known: master)',
        );
      } finally {
        await subject.close();
      }
    });

    it("keeps a round's progress across its progress objects, apart from other rounds", async () => {
      const subject = open();
      try {
        const round = { uuid: randomUUID(), round: R };
        const progress = subject.records.progress(round);
        assert.deepEqual(await progress.files(), new Map());
        assert.equal(await progress.reported(), null);
        assert.equal(await progress.statusSeq(), null);
        await progress.markSent('a.deb');
        await progress.markSent('b.deb');
        await progress.markDone('b.deb');
        await progress.unmarkSent('b.deb');
        await progress.markSent('c.deb');
        await progress.unmarkSent('c.deb');
        const again = subject.records.progress({ ...round });
        assert.deepEqual(
          await again.files(),
          new Map([
            ['a.deb', 'sent'],
            ['b.deb', 'done'],
          ]),
        );
        assert.deepEqual(await again.startTry(1000), { tries: 1, firstTryAt: 1000 });
        assert.deepEqual(await progress.startTry(5000), { tries: 2, firstTryAt: 1000 });
        assert.equal(await progress.failedTry(false), 1);
        assert.equal(await progress.failedTry(false), 2);
        assert.equal(await again.failedTry(true), 1);
        assert.equal(await progress.failedTry(false), 2);
        await progress.setStatusSeq(3);
        assert.equal(await again.statusSeq(), 3);
        await progress.markReported({ result: 'gave-up', reason: 'why', at: 7 });
        assert.deepEqual(await again.reported(), { result: 'gave-up', reason: 'why', at: 7 });
        const other = subject.records.progress({ uuid: round.uuid, round: String(Number(R) + 1) });
        assert.deepEqual(await other.files(), new Map());
        assert.deepEqual(await other.startTry(9000), { tries: 1, firstTryAt: 9000 });
      } finally {
        await subject.close();
      }
    });

    it("reads the last status excerpt of a round from the report queue's ids", async () => {
      const subject = open();
      try {
        const round = { uuid: randomUUID(), round: R };
        assert.equal(await subject.reports.lastStatusSeq(round), 0);
        for (const seq of [1, 4, 2]) {
          await subject.reports.add('status', {}, { jobId: reportJobId(round, { kind: 'status', seq }) });
        }
        await subject.reports.add(
          'status',
          {},
          { jobId: reportJobId({ ...round, round: String(Number(R) + 1) }, { kind: 'status', seq: 9 }) },
        );
        assert.equal(await subject.reports.lastStatusSeq(round), 4);
      } finally {
        await subject.close();
      }
    });
  });
}
