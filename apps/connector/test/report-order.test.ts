import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { REPORT_SENDERS, reportJobId, reportSlot, type JobRecord, type ReportPayload, type ReportSender } from '@spark/protocol';
import { createLogger } from '@spark/service';
import { startReportRelay } from '../src/report-relay.js';
import { FakeRelayWorld, type Heard } from './fake-relay-world.js';

/*
 * The order in which Lighthouse hears a job's reports, under every point at
 * which the connector can be killed (docs/architecture.md, "The report
 * relay"): the relay runs on in-memory report queues and records that behave
 * as BullMQ and Redis do (test/report-inbox.contract.test.ts), on a clock the
 * test moves, and is killed after each of its steps in turn — each call into
 * a queue, the records or Lighthouse, once its effect has happened — then
 * started again, as systemd restarts a killed connector.
 */

const R = '1000';
/**
 * Every first kill is combined with every SECOND_KILL_STRIDE-th step of the
 * next start (offset by the first, so all second steps are covered across
 * first ones): all pairs take minutes. SPARK_ALL_KILL_PAIRS=1 runs every pair.
 */
const SECOND_KILL_STRIDE = process.env['SPARK_ALL_KILL_PAIRS'] === '1' ? 1 : 9;
const J = '11111111-1111-4111-8111-111111111111';
const K = '22222222-2222-4222-8222-222222222222';
const L = '33333333-3333-4333-8333-333333333333';

/** A report, the queue it is in, and when the sender queues it (ms after the start). */
interface Queued {
  sender: ReportSender;
  report: ReportPayload;
  seq?: number;
  at: number;
}

const excerpt = (uuid: string, sender: ReportSender, seq: number, at: number): Queued => ({
  sender,
  seq,
  at,
  report: { kind: 'status', uuid, round: R, at, logExcerpt: `${sender} ${seq}` },
});

/**
 * Three jobs through every sender: J is built (three excerpts) and uploaded
 * (one excerpt while the uploader retries, then its success); K is rejected by
 * the connector; L fails at the signer. `spread` is the time between a job's
 * reports being queued: 0 for a backlog (the connector was down while the
 * stages ran), more for reports arriving while the relay runs.
 */
function pipeline(spread: number): Queued[] {
  const t = (n: number) => n * spread;
  return [
    { sender: 'builder', at: t(0), report: { kind: 'accepted', uuid: J, round: R, at: t(0) } },
    { sender: 'builder', at: t(0), report: { kind: 'accepted', uuid: L, round: R, at: t(0) } },
    excerpt(J, 'builder', 1, t(1)),
    { sender: 'connector', at: t(1), report: { kind: 'rejected', uuid: K, round: R, at: t(1), reason: 'no builder started the job' } },
    excerpt(L, 'builder', 1, t(1)),
    excerpt(J, 'builder', 2, t(2)),
    excerpt(J, 'builder', 3, t(3)),
    { sender: 'signer', at: t(3), report: { kind: 'failed', uuid: L, round: R, at: t(3), reason: 'signing failed' } },
    excerpt(J, 'uploader', 1, t(4)),
    { sender: 'uploader', at: t(5), report: { kind: 'success', uuid: J, round: R, at: t(5) } },
  ];
}

function record(uuid: string): JobRecord {
  return {
    uuid,
    round: R,
    kind: 'package-build',
    architecture: 'amd64',
    repo: 'master',
    package: 'hello',
    version: '1.0-1',
    suite: 'bookworm',
    receivedAt: Number(R),
    rejections: 0,
    firstRejectedAt: null,
    lastRejectedAt: null,
    lastRejection: null,
    needsOperator: false,
    endedRound: null,
  };
}

const quiet = () => createLogger('connector', new Writable({ write: (_chunk, _encoding, done) => done() }));

/** What one run did: what Lighthouse heard, the request each killed life had sent last, and the steps of each life. */
interface Run {
  heard: Heard[];
  lastOfKilled: Heard[];
  steps: number[];
}

/**
 * Runs the relay over `queued`, killing life n after its step `crashes[n]`
 * and starting the next, until every report is done with (the last life runs
 * until then, and is closed).
 */
async function run(queued: readonly Queued[], crashes: readonly number[]): Promise<Run> {
  const world = new FakeRelayWorld();
  for (const uuid of [J, K, L]) world.records.records.set(uuid, record(uuid));
  const start = world.clock.now();
  const later = queued.filter((q) => q.at > 0);
  const queue = (q: Queued) => world.queues[q.sender].add(reportJobId(q.report, reportSlot(q.report, q.seq)), q.report);
  for (const q of queued) if (q.at === 0) queue(q);
  // The senders queue the rest as the clock passes their time, whatever the relay does.
  void (async () => {
    for (const q of [...later].sort((a, b) => a.at - b.at)) {
      await world.clock.pause(start + q.at - world.clock.now(), new AbortController().signal);
      queue(q);
    }
  })();
  const allDone = () =>
    world.clock.now() >= start + Math.max(0, ...queued.map((q) => q.at)) &&
    REPORT_SENDERS.every((sender) => world.queues[sender].waiting.length === 0 && world.queues[sender].active.size === 0);
  const lastOfKilled: Heard[] = [];
  const steps: number[] = [];
  for (let n = 0; ; n++) {
    const life = world.life(crashes[n]);
    const relay = startReportRelay({
      link: life.link,
      inboxes: {
        connector: life.inbox('connector'),
        builder: life.inbox('builder'),
        signer: life.inbox('signer'),
        uploader: life.inbox('uploader'),
      },
      records: life.records,
      clock: life.clock,
      backoff: { initialMs: 50, maxMs: 300 },
      logger: quiet(),
    });
    await world.runUntil(() => life.dead || allDone());
    steps.push(life.steps);
    if (!life.dead) {
      await relay.close();
      return { heard: world.heard, lastOfKilled, steps };
    }
    const last = world.heard.filter((h) => h.life === life.number).at(-1);
    if (last) lastOfKilled.push(last);
  }
}

/** The job a request is about (none for requests about no job). */
function uuidOf(heard: Heard): unknown {
  return (heard.body as Record<string, unknown>)['uuid'];
}

/** A request as the checks name it: `job-status builder 2` for an excerpt, else the request. */
function label(heard: Heard): string {
  const { body } = heard;
  return body.request === 'job-status' ? `job-status ${String((body as Record<string, unknown>)['log_excerpt'])}` : String(body.request);
}

/** Where an excerpt label stands in the order Lighthouse must show excerpts. */
function excerptRank(name: string): number {
  const [, sender = '', seq = '0'] = name.split(' ');
  return REPORT_SENDERS.indexOf(sender as ReportSender) * 1000 + Number(seq);
}

/**
 * Checks what Lighthouse heard of `uuid`: `job-accepted` first when it was
 * queued, the end once and last, the excerpts in the order they were queued
 * (some may be left out: superseded, or queued after the end), and nothing
 * twice — except the request a killed connector had on the wire, sent again
 * right after by the next one (it could not know whether Lighthouse heard it).
 */
function checkJob(result: Run, uuid: string, end: string, accepted: boolean, context: string): void {
  const heard = result.heard.filter((h) => uuidOf(h) === uuid);
  const names: string[] = [];
  for (const h of heard) {
    const name = label(h);
    const resent = names.at(-1) === name && result.lastOfKilled.some((k) => label(k) === name && uuidOf(k) === uuid);
    if (!resent) names.push(name);
  }
  const where = `${context}: Lighthouse heard ${JSON.stringify(heard.map(label))}`;
  assert.equal(new Set(names).size, names.length, `nothing twice (${where})`);
  assert.equal(names.at(-1), end, `the end last (${where})`);
  if (accepted) assert.equal(names[0], 'job-accepted', `job-accepted first (${where})`);
  const ranks = names.filter((name) => name.startsWith('job-status')).map(excerptRank);
  assert.deepEqual(
    ranks,
    [...ranks].sort((a, b) => a - b),
    `excerpts in the order they were queued (${where})`,
  );
}

function check(result: Run, context: string): void {
  checkJob(result, J, 'job-success', true, context);
  checkJob(result, K, 'job-rejected', false, context);
  checkJob(result, L, 'job-failed', true, context);
}

for (const [scenario, spread] of [
  ['a backlog: every report queued before the relay starts', 0],
  ['reports queued while the relay runs', 400],
] as const) {
  describe(`the order Lighthouse hears a job's reports in, with ${scenario}`, () => {
    const queued = pipeline(spread);

    it('holds without a kill, and the last excerpt before the end is the newest', async () => {
      const result = await run(queued, []);
      check(result, 'no kill');
      const names = result.heard.filter((h) => uuidOf(h) === J).map(label);
      assert.equal(names.at(-2), 'job-status uploader 1');
    });

    it('holds when the connector is killed after any one of its steps', async () => {
      const { steps } = await run(queued, []);
      for (let crash = 1; crash <= (steps[0] ?? 0); crash++) check(await run(queued, [crash]), `killed after step ${crash}`);
    });

    it('holds when it is killed after any step, and again after any step of its next start', async () => {
      const { steps } = await run(queued, []);
      for (let first = 1; first <= (steps[0] ?? 0); first++) {
        const once = await run(queued, [first]);
        for (let second = 1 + (first % SECOND_KILL_STRIDE); second <= (once.steps[1] ?? 0); second += SECOND_KILL_STRIDE) {
          check(await run(queued, [first, second]), `killed after step ${first}, then after step ${second} of the next start`);
        }
      }
    });
  });
}
