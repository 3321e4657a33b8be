import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import {
  jobRecordKey,
  REPORT_QUEUES,
  REPORT_SENDERS,
  reportJobId,
  reportSlot,
  signerRoundKey,
  type NewJobRecord,
  type ReportPayload,
  type ReportSender,
} from '@spark/protocol';
import { startRedisServer, waitFor, type RedisServer } from '@spark/testing';
import { packageJob, startWorld, type World } from './harness.js';

/*
 * The report queues as the services write them: one per sender, each relayed
 * in the order a round passes the stages, and what each sender may say
 * checked against what Lighthouse handed out (docs/architecture.md, "The report relay").
 */

const R = '1000';

/** Each sender's report queue on the world's Redis (the connector's is `world.reportQueue`'s). */
function senderQueues(world: World): Record<ReportSender, Queue> {
  return Object.fromEntries(
    REPORT_SENDERS.map((sender) => [sender, new Queue(REPORT_QUEUES[sender], { connection: world.redis, prefix: world.prefix })]),
  ) as Record<ReportSender, Queue>;
}

async function report(queue: Queue, payload: ReportPayload, seq = 0): Promise<void> {
  await queue.add(payload.kind, payload, { jobId: reportJobId(payload, reportSlot(payload, seq)) });
}

/** Writes the job record the connector writes when Lighthouse hands `uuid` out as round `round`, and gives it to the stand-in. */
async function handedOut(world: World, uuid: string, round = R): Promise<void> {
  const record: NewJobRecord = {
    uuid,
    round,
    kind: 'package-build',
    architecture: 'amd64',
    repo: 'master',
    package: 'hello',
    version: '1.0-1',
    suite: 'bookworm',
    receivedAt: Number(round),
  };
  await world.redis.set(jobRecordKey(world.prefix, uuid), JSON.stringify(record));
  world.standIn?.addJob(packageJob(uuid));
  world.standIn?.board.assign(['package-build'], ['amd64'], 'w');
}

/** The job requests Lighthouse heard, as `[request, label]` with each uuid replaced by its label. */
function heard(world: World, labels: Record<string, string>): [string, string][] {
  return (world.standIn?.requests ?? [])
    .filter((r) => String(r.request).startsWith('job-'))
    .map((r) => [String(r.request), labels[String(r['uuid'])] ?? String(r['uuid'])]);
}

function messages(world: World): string[] {
  return world.logs.map((line) => String(line['msg']));
}

describe('the report queues: one per sender, relayed in stage order and checked', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedisServer();
  });
  after(async () => {
    await redis.stop();
  });

  it("sends a later stage's report only after the earlier stages' waiting reports, whatever order they were queued in", async () => {
    const world = await startWorld({ redisUrl: redis.url });
    const queues = senderQueues(world);
    try {
      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
      for (const uuid of [a, b, c]) await handedOut(world, uuid);
      // Queued latest stage first: the order of adding is not the order of sending.
      await report(queues.uploader, { kind: 'success', uuid: a, round: R, at: 6 });
      await report(queues.signer, { kind: 'failed', uuid: b, round: R, at: 5, reason: 'signer refused the build results' });
      await report(queues.builder, { kind: 'accepted', uuid: a, round: R, at: 1 });
      await report(queues.builder, { kind: 'status', uuid: a, round: R, at: 2, logExcerpt: 'building a' }, 1);
      await report(queues.builder, { kind: 'accepted', uuid: b, round: R, at: 3 });
      await report(queues.connector, { kind: 'rejected', uuid: c, round: R, at: 4, reason: 'no builder started the job within 600 s' });
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.filter((r) => String(r.request).startsWith('job-')).length === 6);
      assert.deepEqual(heard(world, { [a]: 'A', [b]: 'B', [c]: 'C' }), [
        ['job-rejected', 'C'],
        ['job-accepted', 'A'],
        ['job-status', 'A'],
        ['job-accepted', 'B'],
        ['job-failed', 'B'],
        ['job-success', 'A'],
      ]);
      assert.deepEqual([world.standIn?.board.get(a)?.status, world.standIn?.board.get(a)?.result], ['DONE', 'success']);
      assert.deepEqual([world.standIn?.board.get(b)?.status, world.standIn?.board.get(b)?.result], ['DONE', 'failure']);
    } finally {
      await Promise.all(Object.values(queues).map((queue) => queue.close()));
      await world.close();
    }
  });

  it('drops, naming why, what a sender may not say: another stage’s kind of report, and the builder on a job it does not hold', async () => {
    const world = await startWorld({ redisUrl: redis.url });
    const queues = senderQueues(world);
    try {
      const [held, handedOn, never, other] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
      for (const uuid of [held, handedOn, other]) await handedOut(world, uuid);
      // The signer took handedOn's round: the builder handed it on.
      await world.redis.set(signerRoundKey(world.prefix, handedOn), R);
      await report(queues.builder, { kind: 'success', uuid: other, round: R, at: 1 });
      await report(queues.builder, { kind: 'accepted', uuid: never, round: R, at: 2 });
      await report(queues.builder, { kind: 'rejected', uuid: held, round: '2000', at: 3, reason: 'a round never handed out' });
      await report(queues.builder, { kind: 'rejected', uuid: handedOn, round: R, at: 4, reason: 'taken back after the hand-over' });
      // Its last excerpt of a build is often sent after the signer took the round: it still goes.
      await report(queues.builder, { kind: 'status', uuid: handedOn, round: R, at: 5, logExcerpt: 'last lines of the build' }, 7);
      await report(queues.signer, { kind: 'accepted', uuid: other, round: R, at: 6 });
      // What each may say still goes through, after all of the above.
      await report(queues.builder, { kind: 'accepted', uuid: handedOn, round: R, at: 7 });
      await report(queues.builder, { kind: 'rejected', uuid: held, round: R, at: 8, reason: 'image missing' });
      await report(queues.uploader, { kind: 'success', uuid: handedOn, round: R, at: 9 });
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-success'));
      assert.deepEqual(heard(world, { [held]: 'held', [handedOn]: 'handedOn' }), [
        ['job-status', 'handedOn'],
        ['job-accepted', 'handedOn'],
        ['job-rejected', 'held'],
        ['job-success', 'handedOn'],
      ]);
      const log = messages(world).join('\n');
      for (const expected of [
        "dropping job-success from the builder's report queue: the builder does not send job-success",
        `dropping job-accepted from the builder's report queue: Lighthouse never handed this job out here (no job record)`,
        "dropping job-rejected from the builder's report queue: round 2000 is no hand-out here (the latest is 1000)",
        "dropping job-rejected from the builder's report queue: the builder handed the round on to the signer; it is not the builder’s to reject",
        "dropping job-accepted from the signer's report queue: the signer does not send job-accepted",
      ]) {
        assert.ok(log.includes(expected), `logged: ${expected}`);
      }
      assert.equal(await queues.builder.getFailedCount(), 0, 'dropped reports are done with, not failed');
    } finally {
      await Promise.all(Object.values(queues).map((queue) => queue.close()));
      await world.close();
    }
  });

  it("does not let a builder queue that is never emptied hold the later stages' reports: they go once it is seen stuck", async () => {
    const world = await startWorld({ redisUrl: redis.url });
    const queues = senderQueues(world);
    try {
      const uuid = randomUUID();
      await handedOut(world, uuid);
      // A hostile builder pauses its own queue with a report in it: the relay can never take that report.
      await queues.builder.pause();
      await report(queues.builder, { kind: 'accepted', uuid, round: R, at: 1 });
      await report(queues.uploader, { kind: 'success', uuid, round: R, at: 2 });
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-success'), 30_000);
      assert.deepEqual(heard(world, { [uuid]: 'J' }), [['job-success', 'J']]);
      assert.ok(
        messages(world).includes(
          "the builder's report queue holds reports the relay cannot take (paused, or held by something else); relaying later reports without them",
        ),
      );
      await waitFor('the success report to complete', async () => (await queues.uploader.getCompletedCount()) === 1, { timeoutMs: 8_000 });
    } finally {
      await Promise.all(Object.values(queues).map((queue) => queue.close()));
      await world.close();
    }
  });
});
