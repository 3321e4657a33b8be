import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  buildPayloadSchema,
  lighthouseStatusSchema,
  reportJobId,
  reportSlot,
  stageJobId,
  storedArchiveTargetsSchema,
  type ReportPayload,
} from '@spark/protocol';
import { packageJob, startLighthouseStandIn, waitFor } from '@spark/testing';
import { MACHINE, startWorld, type World } from './harness.js';

/** The round the tests' own reports belong to (no job record names another, so the relay takes it as current). */
const R = '1';

/** The build job of the latest hand-out of `uuid`, as the connector recorded it. */
function buildJob(world: World, uuid: string) {
  const record = world.record(uuid);
  return record ? world.store.build.job(stageJobId(record, 'build')) : undefined;
}

function messages(world: World): string[] {
  return world.logs.map((line) => String(line['msg']));
}

async function report(world: World, payload: ReportPayload, seq = 0): Promise<void> {
  await world.reports.add(payload.kind, payload, { jobId: reportJobId(payload, reportSlot(payload, seq)) });
}

describe('spark-connector against the Lighthouse stand-in (queues and records in memory)', () => {
  it('stores the upload targets, then puts a handed-out job on build with its uuid as job id', async () => {
    const world = await startWorld();
    try {
      const uuid = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      await world.heartbeat({ slots: 2 });
      await world.connector.start();
      await waitFor('the job in build', () => buildJob(world, uuid) !== undefined, { timeoutMs: 8_000 });
      const job = buildJob(world, uuid);
      const payload = buildPayloadSchema.parse(job?.data);
      assert.equal(payload.job.uuid, uuid);
      assert.equal(payload.job.kind === 'package-build' ? payload.job.data.package_name : null, 'hello');
      // The signer trusts the builder's .dsc only when it has this digest, from the hand-out itself.
      const record = world.record(uuid);
      assert.deepEqual([record?.package, record?.dscName, record?.dscSha256], ['hello', 'hello_1.0-1.dsc', 'a'.repeat(64)]);

      const stored = storedArchiveTargetsSchema.parse(world.store.notes.targets);
      assert.deepEqual(stored.archive_repos, { master: { upload_fqdn: 'archive.example.org/_upload', upload_method: 'https' } });

      const requests = world.standIn?.requests ?? [];
      assert.equal(requests[0]?.request, 'archive-info', 'archive-info is the first request');
      const jobRequest = requests.find((r) => r.request === 'job');
      assert.deepEqual(jobRequest, {
        request: 'job',
        owner: 'tests',
        accepts: ['package-build'],
        architectures: ['amd64'],
        machine_name: MACHINE,
        machine_id: world.config.machineId,
      });
      assert.equal(world.standIn?.board.get(uuid)?.status, 'SCHEDULED');
      const status = lighthouseStatusSchema.parse(world.store.notes.status);
      assert.equal(status.outageSince, null);
      assert.ok(status.lastContactAt !== null);
    } finally {
      await world.close();
    }
  });

  it('asks for no job while no builder has a free slot, and for one once a slot frees up', async () => {
    const world = await startWorld();
    try {
      const uuid = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      await world.heartbeat({ slots: 1, busy: 1 });
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'archive-info'));
      await world.pollsPass(8);
      assert.equal(world.standIn?.requests.filter((r) => r.request === 'job').length, 0, 'no job request without capacity');
      assert.equal(world.standIn?.board.get(uuid)?.status, 'WAITING');

      await world.heartbeat({ slots: 1, busy: 0 });
      await waitFor('the job in build', () => buildJob(world, uuid) !== undefined, { timeoutMs: 8_000 });
      // The job now waits in build and fills the only slot: no more requests.
      const count = world.standIn?.requests.filter((r) => r.request === 'job').length ?? 0;
      await world.pollsPass(6);
      assert.equal(world.standIn?.requests.filter((r) => r.request === 'job').length, count, 'no hoarding');
    } finally {
      await world.close();
    }
  });

  it('relays each report kind to Lighthouse in queue order, and Lighthouse moves the job through its states', async () => {
    const world = await startWorld();
    try {
      const uuid = randomUUID();
      const other = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      world.standIn?.addJob(packageJob(other));
      world.standIn?.board.assign(['package-build'], ['amd64'], 'w');
      world.standIn?.board.assign(['package-build'], ['amd64'], 'w');
      await report(world, { kind: 'accepted', uuid, round: R, at: 1 });
      await report(world, { kind: 'status', uuid, round: R, at: 2, logExcerpt: 'first' }, 1);
      await report(world, { kind: 'accepted', uuid: other, round: R, at: 3 });
      await report(world, { kind: 'success', uuid, round: R, at: 5 });
      await report(world, { kind: 'rejected', uuid: other, round: R, at: 6, reason: 'image missing' });
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.filter((r) => String(r.request).startsWith('job-')).length === 5);
      const relayed = world.standIn?.requests
        .filter((r) => String(r.request).startsWith('job-'))
        .map((r) => [r.request, r['uuid'] === uuid ? 'A' : 'B', r['log_excerpt']]);
      assert.deepEqual(relayed, [
        ['job-accepted', 'A', undefined],
        ['job-status', 'A', 'first'],
        ['job-accepted', 'B', undefined],
        ['job-success', 'A', undefined],
        ['job-rejected', 'B', undefined],
      ]);
      assert.deepEqual([world.standIn?.board.get(uuid)?.status, world.standIn?.board.get(uuid)?.result], ['DONE', 'success']);
      assert.equal(world.standIn?.board.get(other)?.status, 'WAITING');
    } finally {
      await world.close();
    }
  });

  it('completes a report whose reply nests too deep to print (the log says so; the report does not end up failed)', async () => {
    const world = await startWorld();
    try {
      const uuid = randomUUID();
      world.standIn?.replyNext('job-accepted', '['.repeat(300_000) + ']'.repeat(300_000));
      await report(world, { kind: 'accepted', uuid, round: R, at: 1 });
      await world.connector.start();
      const reports = world.reportQueues.connector;
      await waitFor('the report to be done with', () => reports.finished.includes(reportJobId({ uuid, round: R }, { kind: 'accepted' })), {
        timeoutMs: 8_000,
      });
      assert.deepEqual(reports.failed, [], 'completed, not failed');
      assert.equal(world.standIn?.requests.filter((r) => r.request === 'job-accepted').length, 1, 'sent once');
      assert.match(messages(world).join('\n'), /job-accepted: unexpected reply \(not printable: Maximum call stack size exceeded\)/);
      assert.deepEqual(world.fatal, []);
    } finally {
      await world.close();
    }
  });

  it('keeps running when Lighthouse answers archive-info with a frame that is not JSON or too large, and asks again with backoff (not after the 300 s refresh interval)', async () => {
    const world = await startWorld();
    try {
      world.standIn?.replyNext('archive-info', 'not json');
      world.standIn?.replyNext('archive-info', JSON.stringify({ padding: 'x'.repeat(2 * 1024 * 1024) }));
      await world.connector.start();
      await waitFor('the upload targets to be stored', () => world.store.notes.targets !== null, { timeoutMs: 8_000 });
      assert.equal(world.standIn?.requests.filter((r) => r.request === 'archive-info').length, 3);
      const log = messages(world).join('\n');
      assert.match(log, /archive-info: Lighthouse sent an unreadable reply: reply is not JSON/);
      assert.match(log, /archive-info: Lighthouse sent an unreadable reply: reply of \d+ bytes exceeds the 1048576-byte limit/);
      assert.deepEqual(world.fatal, []);
    } finally {
      await world.close();
    }
  });

  it('never enqueues a hostile or malformed job: fails it by uuid when usable, with the reason as its log excerpt, logs why, keeps running', async () => {
    const world = await startWorld();
    try {
      const traversal = randomUUID();
      const wrongTypes = randomUUID();
      const unknownKind = randomUUID();
      const noRepo = randomUUID();
      const good = randomUUID();
      const hostile = [
        JSON.stringify(packageJob('../../etc/passwd')),
        JSON.stringify(packageJob(traversal, { data: { ...(packageJob(traversal)['data'] as object), package_name: '../../../root' } })),
        JSON.stringify(packageJob(wrongTypes, { architecture: 42 })),
        JSON.stringify(packageJob(unknownKind, { kind: 'rm-rf' })),
        JSON.stringify(packageJob(noRepo, { repo: null })),
        JSON.stringify({ error: 'database is on fire' }),
        'this is not json',
        '[1,2,3]',
      ];
      for (const frame of hostile) world.standIn?.replyNext('job', frame);
      world.standIn?.addJob(packageJob(good));
      await world.heartbeat({ slots: 1 });
      await world.connector.start();
      await waitFor('the good job after the hostile ones in build', () => buildJob(world, good) !== undefined, {
        timeoutMs: 8_000,
      });
      await world.standIn?.waitFor((requests) => requests.filter((r) => r.request === 'job-failed').length === 4);

      // Malformed beyond use: no worker can run it, so it is failed (rejecting would put it first in line again).
      const failed = world.standIn?.requests.filter((r) => r.request === 'job-failed').map((r) => r['uuid']);
      assert.deepEqual(failed, [traversal, wrongTypes, unknownKind, noRepo]);
      assert.equal(world.standIn?.requests.filter((r) => r.request === 'job-rejected').length, 0);
      const excerpt = world.standIn?.requests.find((r) => r.request === 'job-status' && r['uuid'] === noRepo)?.['log_excerpt'];
      assert.equal(excerpt, 'this worker cannot run the job: job names no repository to upload to');
      const load = await world.store.build.load();
      assert.equal(load.unstarted + load.active, 1, 'only the good job was enqueued');
      const log = messages(world).join('\n');
      assert.match(
        log,
        /ignoring a job reply without a usable uuid \(cannot reject it\): malformed job: uuid: "\.\.\/\.\.\/etc\/passwd" is not a valid UUID/,
      );
      assert.match(
        log,
        /malformed package-build job: data\.package_name: "\.\.\/\.\.\/\.\.\/root" is not a valid Debian package name; reporting it failed to Lighthouse/,
      );
      assert.match(log, /unknown job kind "rm-rf"; reporting it failed to Lighthouse/);
      assert.match(log, /job names no repository to upload to; reporting it failed to Lighthouse/);
      assert.match(log, /Lighthouse answered the job request with an error: database is on fire/);
      assert.match(log, /job request: Lighthouse sent an unreadable reply: reply is not JSON/);
      assert.deepEqual(world.fatal, []);
    } finally {
      await world.close();
    }
  });

  it('holds reports while Lighthouse is down, logs the outage once, and delivers them in order when it is back (superseded excerpts coalesced)', async () => {
    const world = await startWorld();
    try {
      const uuid = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      world.standIn?.board.assign(['package-build'], ['amd64'], 'w');
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'archive-info'));
      const board = world.standIn?.board;
      const endpoint = world.standIn?.endpoint ?? '';
      world.standIn?.close();

      await report(world, { kind: 'accepted', uuid, round: R, at: 1 });
      await report(world, { kind: 'status', uuid, round: R, at: 2, logExcerpt: 'one' }, 1);
      await report(world, { kind: 'status', uuid, round: R, at: 3, logExcerpt: 'two' }, 2);
      await report(world, { kind: 'status', uuid, round: R, at: 4, logExcerpt: 'three' }, 3);
      await report(world, { kind: 'failed', uuid, round: R, at: 5, reason: 'FTBFS' });
      // The relay has tried the first report and found Lighthouse away: the others wait behind it.
      await waitFor('the outage to be logged', () => messages(world).some((msg) => msg.startsWith('Lighthouse unreachable')), {
        timeoutMs: 8_000,
      });
      const revived = await startLighthouseStandIn({
        endpoint,
        serverKeys: world.serverKeys,
        trustedKeysDir: world.trustedDir,
        ...(board ? { board } : {}),
      });
      try {
        await revived.waitFor((requests) => requests.some((r) => r.request === 'job-failed'));
        // The excerpts superseded during the outage are coalesced into the latest; Lighthouse keeps only that one.
        assert.deepEqual(
          revived.requests.filter((r) => String(r.request).startsWith('job-')).map((r) => [r.request, r['log_excerpt']]),
          [
            ['job-accepted', undefined],
            ['job-status', 'three'],
            ['job-failed', undefined],
          ],
        );
        assert.deepEqual([board?.get(uuid)?.status, board?.get(uuid)?.result], ['DONE', 'failure']);
        const outage = messages(world).filter((msg) => msg.startsWith('Lighthouse unreachable'));
        assert.equal(outage.length, 1, `outage logged once: ${outage.join(' | ')}`);
        assert.match(outage[0] ?? '', /no reply from Lighthouse at tcp:\/\/127\.0\.0\.1:\d+ within 300 ms/);
        assert.ok(messages(world).includes('Lighthouse answers again'));
      } finally {
        revived.close();
      }
    } finally {
      await world.close();
    }
  });

  it('on shutdown puts the undelivered report back at the head of the queue without waiting for Lighthouse', async () => {
    const world = await startWorld({ endpoint: 'tcp://127.0.0.1:9' });
    try {
      const uuid = randomUUID();
      await report(world, { kind: 'accepted', uuid, round: R, at: 1 });
      await report(world, { kind: 'success', uuid, round: R, at: 2 });
      await world.connector.start();
      await waitFor('the outage to be logged', () => messages(world).some((msg) => msg.startsWith('Lighthouse unreachable')), {
        timeoutMs: 8_000,
      });
      const started = Date.now();
      await world.connector.close();
      assert.ok(Date.now() - started < 3000, 'close does not wait for Lighthouse');
      const reports = world.reportQueues.connector;
      assert.deepEqual(
        { waiting: reports.waiting.length, active: reports.active.size, done: reports.finished.length, paused: reports.paused },
        { waiting: 2, active: 0, done: 0, paused: false },
      );
      assert.equal(reports.waiting[0], reportJobId({ uuid, round: R }, { kind: 'accepted' }), 'the accepted report is still first in line');
    } finally {
      await world.close();
    }
  });

  it('with a wrong server public key: says so, takes no job', async () => {
    const world = await startWorld({ wrongServerKey: true });
    try {
      const uuid = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      await world.heartbeat({ slots: 1 });
      await world.connector.start();
      await waitFor('the outage to be logged', () => messages(world).some((msg) => msg.startsWith('Lighthouse unreachable')), {
        timeoutMs: 8_000,
      });
      const outage = messages(world).find((msg) => msg.startsWith('Lighthouse unreachable')) ?? '';
      assert.match(
        outage,
        /the CURVE handshake did not complete.*the server public key in .*hydrogen_lighthouse-server\.pub is probably not Lighthouse's/,
      );
      assert.equal(world.standIn?.requests.length, 0);
      assert.equal(world.standIn?.board.get(uuid)?.status, 'WAITING');
      assert.equal(buildJob(world, uuid), undefined);
    } finally {
      await world.close();
    }
  });

  it('with a worker key Lighthouse does not trust: refused by the ZAP handler, says so, takes no job', async () => {
    const world = await startWorld({ untrusted: true });
    try {
      const uuid = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      await world.heartbeat({ slots: 1 });
      await world.connector.start();
      await waitFor('the outage to be logged', () => messages(world).some((msg) => msg.startsWith('Lighthouse unreachable')), {
        timeoutMs: 8_000,
      });
      const outage = messages(world).find((msg) => msg.startsWith('Lighthouse unreachable')) ?? '';
      assert.match(outage, /Lighthouse refused this worker's Curve key \(ZAP status 400\)/);
      assert.ok(world.standIn?.refused.includes(world.workerKeys.publicKey));
      assert.equal(world.standIn?.requests.length, 0);
      assert.equal(world.standIn?.board.get(uuid)?.status, 'WAITING');
    } finally {
      await world.close();
    }
  });

  it('takes a job it rejected before again once its cool-down has passed, as a new round, and relays the reports of the new round', async () => {
    const world = await startWorld();
    const uuid = randomUUID();
    let handOuts = 0;
    const rounds: string[] = [];
    // A stand-in builder: rejects the first round (say, a full disk), builds the second.
    const builder = world.store.build.inbox();
    builder.run(
      async (job) => {
        handOuts += 1;
        const { round } = buildPayloadSchema.parse(job.data);
        rounds.push(round);
        const at = world.clock.now();
        await report(world, { kind: 'accepted', uuid, round, at });
        await report(world, { kind: 'status', uuid, round, at, logExcerpt: `round ${handOuts}` }, 1);
        await report(
          world,
          handOuts === 1 ? { kind: 'rejected', uuid, round, at, reason: 'disk full' } : { kind: 'success', uuid, round, at },
        );
      },
      () => undefined,
    );
    try {
      world.standIn?.addJob(packageJob(uuid));
      await world.heartbeat({ slots: 1 });
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-success'), 15_000);
      const relayed = world.standIn?.requests.filter((r) => String(r.request).startsWith('job-')).map((r) => [r.request, r['log_excerpt']]);
      // Hand-outs within the cool-down after the rejection go straight back (bounced, not built).
      const bounced =
        relayed?.filter(([request], index) => request === 'job-rejected' && relayed[index - 1]?.[0] === 'job-rejected').length ?? 0;
      assert.deepEqual(
        relayed?.filter(([request], index) => !(request === 'job-rejected' && relayed[index - 1]?.[0] === 'job-rejected')),
        [
          ['job-accepted', undefined],
          ['job-status', 'round 1'],
          ['job-rejected', undefined],
          ['job-accepted', undefined],
          ['job-status', 'round 2'],
          ['job-success', undefined],
        ],
      );
      assert.deepEqual([world.standIn?.board.get(uuid)?.status, world.standIn?.board.get(uuid)?.result], ['DONE', 'success']);
      assert.equal(handOuts, 2, `built twice (and bounced ${bounced} hand-outs within the cool-down)`);
      assert.equal(new Set(rounds).size, 2, 'each hand-out is a round of its own');
    } finally {
      await builder.close();
      await world.close();
    }
  });

  it('rejects back a job no builder started within StartTimeout', async () => {
    const world = await startWorld({ connectorToml: 'StartTimeout = 0.3' });
    try {
      const uuid = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      await world.heartbeat({ slots: 1 });
      await world.connector.start();
      await waitFor('the job in build', () => buildJob(world, uuid) !== undefined, { timeoutMs: 8_000 });
      // The builder is now busy with something else: the rejected job is not fetched again.
      await world.heartbeat({ slots: 1, busy: 1 });
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-rejected' && r['uuid'] === uuid));
      assert.equal(buildJob(world, uuid), undefined, 'the job left the build queue');
      assert.match(messages(world).join('\n'), /no builder started the job within 0\.3 s; rejecting it back to Lighthouse/);
    } finally {
      await world.close();
    }
  });
});
