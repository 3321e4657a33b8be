import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { jobSchema, type Job, type JobRound } from '@spark/protocol';
import {
  connectRedis,
  readJobRecord,
  recordHandOut,
  recordRoundEnd,
  redisReady,
  roundEndedRecord,
  updateJobRecord,
  type Redis,
} from '@spark/service';
import { packageJob as wirePackageJob, randomQueuePrefix, startRedisServer, type RedisServer } from '@spark/testing';

const packageJob = (uuid: string): Job => jobSchema.parse(wirePackageJob(uuid));

describe('job records', () => {
  let server: RedisServer;
  let redis: Redis;
  let other: Redis;
  const prefix = randomQueuePrefix();
  before(async () => {
    server = await startRedisServer();
    redis = connectRedis(server.url, 'producer');
    other = connectRedis(server.url, 'producer');
    await Promise.all([redisReady(redis), redisReady(other)]);
  });
  after(async () => {
    redis.disconnect();
    other.disconnect();
    await server.stop();
  });

  it('keeps a new hand-out written between an update’s read and its write, and asks the change again', async () => {
    const job = packageJob(randomUUID());
    const first = await recordHandOut(redis, prefix, job, 1_000);
    const round: JobRound = { uuid: job.uuid, round: first.round };
    const seen: (string | null)[] = [];
    let second: string | null = null;
    const written = await updateJobRecord(redis, prefix, job.uuid, async (record) => {
      seen.push(record?.round ?? null);
      // The connector's job fetcher records the next hand-out while the relay is between its read and its write.
      if (second === null) second = (await recordHandOut(other, prefix, job, 2_000)).round;
      return roundEndedRecord(record, round, { kind: 'success' }, 1_500);
    });
    assert.deepEqual(seen, [first.round, second], 'read again after the hand-out');
    assert.equal(written, null, 'the end of the earlier round is not noted on the new hand-out');
    const now = await readJobRecord(redis, prefix, job.uuid);
    assert.equal(now?.round, second);
    assert.equal(now?.endedRound, null);
  });

  it('notes a round’s end on the record of that round, and a rejection adds to the next hand-out’s history', async () => {
    const job = packageJob(randomUUID());
    const first = await recordHandOut(redis, prefix, job, 1_000);
    await recordRoundEnd(
      redis,
      prefix,
      { uuid: job.uuid, round: first.round },
      { kind: 'rejected', reason: 'no image', needsOperator: true },
      1_100,
    );
    const ended = await readJobRecord(redis, prefix, job.uuid);
    assert.equal(ended?.endedRound, first.round);
    assert.equal(ended?.rejections, 1);
    const next = await recordHandOut(redis, prefix, job, 2_000);
    assert.notEqual(next.round, first.round);
    assert.deepEqual([next.rejections, next.lastRejection, next.needsOperator, next.endedRound], [1, 'no image', true, null]);
    // The earlier round's report, arriving late, changes nothing.
    await recordRoundEnd(redis, prefix, { uuid: job.uuid, round: first.round }, { kind: 'success' }, 2_100);
    assert.deepEqual(await readJobRecord(redis, prefix, job.uuid), next);
  });
});
