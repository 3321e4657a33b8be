import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { jobRecordSchema, reportJobId, reportSlot, type NewJobRecord, type ReportPayload } from '@spark/protocol';
import { packageJob, waitFor } from '@spark/testing';
import { STUCK_QUEUE_MS } from '../src/report-relay.js';
import type { FakeReportQueue } from './fake-relay-world.js';
import { startWorld, type World } from './harness.js';

/*
 * The report queues as the services write them: one per sender, each relayed
 * in the order a round passes the stages, and what each sender may say
 * checked against what Lighthouse handed out (docs/architecture.md, "The report relay").
 * The queues and records are in memory; Lighthouse is the stand-in.
 */

const R = '1000';

async function report(queue: FakeReportQueue, payload: ReportPayload, seq = 0): Promise<void> {
  await queue.outbox().add(payload.kind, payload, { jobId: reportJobId(payload, reportSlot(payload, seq)) });
}

/** How many reports of `queue` completed (done with, not failed). */
function completed(queue: FakeReportQueue): number {
  return queue.finished.filter((id) => !queue.failed.includes(id)).length;
}

/** Writes the job record the connector writes when Lighthouse hands `uuid` out as round `round`, and gives it to the stand-in. */
function handedOut(world: World, uuid: string, round = R, more: Partial<NewJobRecord> = {}): void {
  const record: NewJobRecord = {
    ...more,
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
  world.store.relay.records.records.set(uuid.toLowerCase(), jobRecordSchema.parse(record));
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
  it("sends a later stage's report of a round only after the earlier stages' accepted and end of it, whatever order they were queued in", async () => {
    const world = await startWorld();
    const queues = world.reportQueues;
    try {
      const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
      for (const uuid of [a, b, c]) handedOut(world, uuid);
      // Queued latest stage first: the order of adding is not the order of sending.
      await report(queues.uploader, { kind: 'success', uuid: a, round: R, at: 6 });
      await report(queues.signer, { kind: 'failed', uuid: b, round: R, at: 5, reason: 'signer refused the build results' });
      await report(queues.builder, { kind: 'accepted', uuid: a, round: R, at: 1 });
      await report(queues.builder, { kind: 'status', uuid: a, round: R, at: 2, logExcerpt: 'building a' }, 1);
      await report(queues.builder, { kind: 'accepted', uuid: b, round: R, at: 3 });
      await report(queues.connector, { kind: 'rejected', uuid: c, round: R, at: 4, reason: 'no builder started the job within 600 s' });
      await world.connector.start();
      await world.standIn?.waitFor(
        (requests) => requests.filter((r) => r.request === 'job-success' || r.request === 'job-failed').length === 2,
      );
      await waitFor('every report is done with', () => completed(queues.builder) === 3, { timeoutMs: 30_000 });
      const of = (label: string) =>
        heard(world, { [a]: 'A', [b]: 'B', [c]: 'C' })
          .filter(([, job]) => job === label)
          .map(([request]) => request);
      // Each job's reports in its stages' order. A's excerpt is not waited for: it goes before A's end, or is dropped after it.
      const droppedAfterEnd = messages(world).includes(
        "dropping job-status from the builder's report queue: the round has ended at Lighthouse; an excerpt now would follow its end",
      );
      assert.deepEqual(of('A'), droppedAfterEnd ? ['job-accepted', 'job-success'] : ['job-accepted', 'job-status', 'job-success']);
      assert.deepEqual(of('B'), ['job-accepted', 'job-failed']);
      assert.deepEqual(of('C'), ['job-rejected']);
      assert.deepEqual([world.standIn?.board.get(a)?.status, world.standIn?.board.get(a)?.result], ['DONE', 'success']);
      assert.deepEqual([world.standIn?.board.get(b)?.status, world.standIn?.board.get(b)?.result], ['DONE', 'failure']);
    } finally {
      await world.close();
    }
  });

  it('drops, naming why, what a sender may not say: another stage’s kind of report, and the builder on a job it does not hold', async () => {
    const world = await startWorld();
    const queues = world.reportQueues;
    try {
      const [held, handedOn, never, other, ended] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()];
      for (const uuid of [held, handedOn, other]) handedOut(world, uuid);
      // Lighthouse has heard the end of ended's round: an excerpt now would follow it.
      handedOut(world, ended, R, { endedRound: R });
      await report(queues.builder, { kind: 'status', uuid: ended, round: R, at: 1, logExcerpt: 'too late' }, 3);
      // The signer took handedOn's round: the builder handed it on.
      world.store.relay.records.signerRounds.set(handedOn, R);
      await report(queues.builder, { kind: 'success', uuid: other, round: R, at: 1 });
      await report(queues.builder, { kind: 'accepted', uuid: never, round: R, at: 2 });
      await report(queues.builder, { kind: 'rejected', uuid: held, round: '2000', at: 3, reason: 'a round never handed out' });
      await report(queues.builder, { kind: 'rejected', uuid: handedOn, round: R, at: 4, reason: 'taken back after the hand-over' });
      // Its last excerpt of a build is often sent after the signer took the round: it is not refused for that.
      await report(queues.builder, { kind: 'status', uuid: handedOn, round: R, at: 5, logExcerpt: 'last lines of the build' }, 7);
      await report(queues.signer, { kind: 'accepted', uuid: other, round: R, at: 6 });
      // What each may say still goes through, after all of the above.
      await report(queues.builder, { kind: 'accepted', uuid: handedOn, round: R, at: 7 });
      await report(queues.builder, { kind: 'rejected', uuid: held, round: R, at: 8, reason: 'image missing' });
      await report(queues.uploader, { kind: 'success', uuid: handedOn, round: R, at: 9 });
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-success'));
      await waitFor('every report is done with', () => completed(queues.builder) === 8, { timeoutMs: 30_000 });
      const of = (uuid: string) =>
        heard(world, { [held]: 'held', [handedOn]: 'handedOn' })
          .filter(([, job]) => job === uuid)
          .map(([request]) => request);
      // The success waits for handedOn's accepted only (pulled ahead of the excerpt queued before it); the excerpt goes before the end or is dropped.
      assert.deepEqual(
        of('handedOn').filter((request) => request !== 'job-status'),
        ['job-accepted', 'job-success'],
      );
      assert.ok(of('handedOn').indexOf('job-status') < of('handedOn').indexOf('job-success'));
      assert.deepEqual(of('held'), ['job-rejected']);
      const log = messages(world).join('\n');
      for (const expected of [
        "dropping job-success from the builder's report queue: the builder does not send job-success",
        `dropping job-accepted from the builder's report queue: Lighthouse never handed this job out here (no job record)`,
        "dropping job-rejected from the builder's report queue: round 2000 is no hand-out here (the latest is 1000)",
        "dropping job-rejected from the builder's report queue: the builder handed the round on to the signer; it is not the builder’s to reject",
        "dropping job-accepted from the signer's report queue: the signer does not send job-accepted",
        "dropping job-status from the builder's report queue: the round has ended at Lighthouse; an excerpt now would follow its end",
      ]) {
        assert.ok(log.includes(expected), `logged: ${expected}`);
      }
      assert.equal(queues.builder.failed.length, 0, 'dropped reports are done with, not failed');
    } finally {
      await world.close();
    }
  });

  it("does not let a builder flooding its queue hold the other senders' reports, nor the journal", async () => {
    const world = await startWorld();
    const queues = world.reportQueues;
    try {
      const [honest, other] = [randomUUID(), randomUUID()];
      handedOut(world, honest);
      handedOut(world, other);
      await report(queues.builder, { kind: 'accepted', uuid: other, round: R, at: 1 });
      // The flood comes before the honest round's accepted: excerpts of jobs never handed out here, each dropped.
      const flood = 5_000;
      for (let i = 0; i < flood; i++) {
        await report(queues.builder, { kind: 'status', uuid: randomUUID(), round: R, at: 2, logExcerpt: `flood ${i}` }, 1);
      }
      await report(queues.builder, { kind: 'accepted', uuid: honest, round: R, at: 3 });
      await report(queues.uploader, { kind: 'success', uuid: honest, round: R, at: 4 });
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-success'), 30_000);
      const left = queues.builder.waiting.length;
      assert.ok(left > flood / 2, `the success went while the flood was still queued (${left} of ${flood} reports left)`);
      assert.deepEqual(heard(world, { [honest]: 'H', [other]: 'O' }), [
        ['job-accepted', 'O'],
        ['job-accepted', 'H'],
        ['job-success', 'H'],
      ]);
      await waitFor('the flood is dropped', () => queues.builder.waiting.length === 0, { timeoutMs: 120_000 });
      const oneByOne = messages(world).filter((message) => message.startsWith('dropping job-status')).length;
      assert.ok(oneByOne <= 20, `${oneByOne} drops logged one by one (at most 20 a minute)`);
      assert.equal(
        (world.standIn?.requests ?? []).filter((r) => r.request === 'job-status').length,
        0,
        'no flood report reached Lighthouse',
      );
    } finally {
      await world.close();
    }
  });

  it("does not let a builder queue that is never emptied hold the later stages' reports: they go once it is seen stuck", async () => {
    const world = await startWorld();
    const queues = world.reportQueues;
    try {
      const uuid = randomUUID();
      handedOut(world, uuid);
      // A hostile builder pauses its own queue with a report in it: the relay can never take that report.
      queues.builder.pause();
      await report(queues.builder, { kind: 'accepted', uuid, round: R, at: 1 });
      await report(queues.uploader, { kind: 'success', uuid, round: R, at: 2 });
      await world.connector.start();
      // The success waits for the builder's accepted; then the builder's queue stays idle that long.
      await waitFor('the success to be in hand', () => queues.uploader.active.size === 1, { timeoutMs: 8_000 });
      await world.clock.advance(STUCK_QUEUE_MS);
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-success'), 30_000);
      assert.deepEqual(heard(world, { [uuid]: 'J' }), [['job-success', 'J']]);
      assert.ok(
        messages(world).includes(
          "the builder's accepted report of this round stays in its queue where the relay cannot take it (paused, or held by something else); relaying the uploader's reports of the round without it",
        ),
      );
      await waitFor('the success report to complete', () => completed(queues.uploader) === 1, { timeoutMs: 8_000 });
    } finally {
      await world.close();
    }
  });
});
