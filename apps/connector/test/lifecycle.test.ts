import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { buildPayloadSchema, reportJobId, reportSlot, type ReportPayload } from '@spark/protocol';
import { packageJob, waitFor, type WirePackageJob } from '@spark/testing';
import { CONNECTOR_LOCK_RENEW_MS } from '../src/connector-lock.js';
import { startWorld, type World } from './harness.js';

/*
 * Laniakea's real job lifecycle against the stand-in (docs/architecture.md,
 * "Rounds and ids"): re-handed-out uuids, jobs that can never run, jobs this
 * worker rejects, and `{error}` replies. A stand-in builder (the worker of the
 * in-memory `build` queue) reports what a builder would.
 */

function imageJob(uuid: string): WirePackageJob {
  return packageJob(uuid, {
    kind: 'os-image-build',
    data: {
      image_format: 'iso',
      git_url: 'git@salsa.debian.org:images/recipes.git',
      distribution: 'debian',
      suite: 'bookworm',
      environment: 'gnome',
      style: null,
      architecture: 'amd64',
    },
  });
}

type Outcome = 'success' | 'failed' | { rejected: string; needsOperator?: boolean };

/** A stand-in builder that ends each round of a job of `kind` as `decide` says, reporting accepted, one excerpt, and the end. */
function standInBuilder(world: World, decide: (kind: string, hand: number) => Outcome): { rounds: string[]; close(): Promise<void> } {
  const rounds: string[] = [];
  const report = (payload: ReportPayload, seq = 0) =>
    world.reports.add(payload.kind, payload, { jobId: reportJobId(payload, reportSlot(payload, seq)) });
  const worker = world.store.build.inbox();
  worker.run(
    async (job) => {
      const { job: handed, round } = buildPayloadSchema.parse(job.data);
      rounds.push(`${handed.uuid}.${round}`);
      const outcome = decide(handed.kind, rounds.length);
      const base = { uuid: handed.uuid, round, at: world.clock.now() };
      await report({ kind: 'accepted', ...base });
      await report({ kind: 'status', ...base, logExcerpt: `hand-out ${rounds.length}` }, 1);
      if (outcome === 'success') await report({ kind: 'success', ...base });
      else if (outcome === 'failed') await report({ kind: 'failed', ...base, reason: 'FTBFS' });
      else await report({ kind: 'rejected', ...base, reason: outcome.rejected, ...(outcome.needsOperator ? { needsOperator: true } : {}) });
    },
    () => undefined,
  );
  return { rounds, close: () => worker.close() };
}

describe('the job lifecycle Laniakea really has (queues and records in memory)', () => {
  const withWorld = async (connectorToml: string, body: (world: World) => Promise<void>): Promise<void> => {
    const world = await startWorld({ connectorToml });
    try {
      await body(world);
    } finally {
      await world.close();
    }
  };

  it('builds a job again when Lighthouse hands it out again after it succeeded here (lk-admin job retry), and it ends DONE', async () => {
    await withWorld('', async (world) => {
      const uuid = randomUUID();
      const builder = standInBuilder(world, () => 'success');
      try {
        world.standIn?.addJob(packageJob(uuid));
        await world.heartbeat({ slots: 1 });
        await world.connector.start();
        const successes = () => world.standIn?.requests.filter((r) => r.request === 'job-success' && r['uuid'] === uuid).length ?? 0;
        await world.standIn?.waitFor(() => successes() === 1);
        world.standIn?.board.retry(uuid);
        await world.standIn?.waitFor(() => successes() === 2);
        assert.equal(builder.rounds.length, 2, 'built twice');
        assert.notEqual(builder.rounds[0], builder.rounds[1], 'each hand-out is a round of its own');
        const events = world.standIn?.requests.filter((r) => r['uuid'] === uuid).map((r) => [r.request, r['log_excerpt'] ?? null]);
        assert.deepEqual(events, [
          ['job-accepted', null],
          ['job-status', 'hand-out 1'],
          ['job-success', null],
          ['job-accepted', null],
          ['job-status', 'hand-out 2'],
          ['job-success', null],
        ]);
        assert.deepEqual([world.standIn?.board.get(uuid)?.status, world.standIn?.board.get(uuid)?.result], ['DONE', 'success']);
      } finally {
        await builder.close();
      }
    });
  });

  it('fails a never-runnable job first in line once, with its reason, and runs the jobs behind it', async () => {
    await withWorld('', async (world) => {
      const poison = randomUUID();
      const good = randomUUID();
      const builder = standInBuilder(world, () => 'success');
      try {
        world.standIn?.addJob(packageJob(poison, { data: { ...(packageJob(poison)['data'] as object), package_name: '../../x' } }));
        world.standIn?.addJob(packageJob(good));
        await world.heartbeat({ slots: 1 });
        await world.connector.start();
        await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-success' && r['uuid'] === good));
        const aboutPoison = world.standIn?.requests.filter((r) => r['uuid'] === poison).map((r) => r.request);
        assert.deepEqual(aboutPoison, ['job-status', 'job-failed']);
        const entry = world.standIn?.board.get(poison);
        assert.deepEqual([entry?.status, entry?.result], ['DONE', 'failure']);
        assert.match(
          entry?.logExcerpt ?? '',
          /^this worker cannot run the job: malformed package-build job: data\.package_name: "\.\.\/\.\.\/x"/,
        );
        assert.deepEqual(
          builder.rounds.map((round) => round.split('.')[0]),
          [good],
        );
      } finally {
        await builder.close();
      }
    });
  });

  it('keeps other kinds going while a job it rejected for a missing image is first in line, and fails that job after GiveUpRejectedAfter', async () => {
    await withWorld('GiveUpRejectedAfter = 2', async (world) => {
      const noImage = randomUUID();
      const image = randomUUID();
      const builder = standInBuilder(world, (kind) =>
        kind === 'package-build' ? { rejected: 'this worker is missing an environment: bookworm', needsOperator: true } : 'success',
      );
      try {
        world.standIn?.addJob(packageJob(noImage));
        world.standIn?.addJob(imageJob(image));
        // The kind stays blocked from the rejection's delivery until the job is failed (at least GiveUpRejectedAfter):
        // looked at all along, as the image job's success and the rejection's delivery come in either order.
        let sawBlocked = false;
        const sampler = setInterval(() => (sawBlocked ||= world.store.kindBlocks.entries.has('package-build')), 20);
        try {
          await world.heartbeat({ slots: 1, kinds: ['package-build', 'os-image-build'] });
          await world.connector.start();
          await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-success' && r['uuid'] === image), 15_000);
          await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-failed' && r['uuid'] === noImage), 20_000);
        } finally {
          clearInterval(sampler);
        }
        assert.ok(
          sawBlocked || builder.rounds.filter((round) => round.startsWith(noImage)).length > 1,
          'the rejected kind was left out of requests for a while',
        );
        const entry = world.standIn?.board.get(noImage);
        assert.deepEqual([entry?.status, entry?.result], ['DONE', 'failure']);
        assert.match(
          entry?.logExcerpt ?? '',
          /this worker is missing an environment: bookworm — rejected \d+ times over [0-9.]+ h; an operator must fix this host/,
        );
        const requestsFor = world.standIn?.requests.filter((r) => r.request === 'job') ?? [];
        assert.ok(
          requestsFor.some((r) => JSON.stringify(r['accepts']) === JSON.stringify(['os-image-build'])),
          'asked for the other kind alone while package-build was blocked',
        );
      } finally {
        await builder.close();
      }
    });
  });

  it('asks again after {error} replies (a Lighthouse database hiccup): nothing is lost or reordered', async () => {
    await withWorld('', async (world) => {
      const uuid = randomUUID();
      world.standIn?.failNext('job-accepted', 2);
      world.standIn?.failNext('job-success', 3);
      const builder = standInBuilder(world, () => 'success');
      try {
        world.standIn?.addJob(packageJob(uuid));
        await world.heartbeat({ slots: 1 });
        await world.connector.start();
        await world.standIn?.waitFor((requests) => requests.filter((r) => r.request === 'job-success').length === 4);
        const sequence = world.standIn?.requests.filter((r) => r['uuid'] === uuid).map((r) => r.request);
        assert.deepEqual(sequence, [
          'job-accepted',
          'job-accepted',
          'job-accepted',
          'job-status',
          'job-success',
          'job-success',
          'job-success',
          'job-success',
        ]);
        assert.deepEqual([world.standIn?.board.get(uuid)?.status, world.standIn?.board.get(uuid)?.result], ['DONE', 'success']);
        const log = world.logs.map((line) => String(line['msg'])).join('\n');
        assert.match(log, /Lighthouse answered job-accepted with an error \(Failed to handle request: .*\); asking again \(try 1\)/);
      } finally {
        await builder.close();
      }
    });
  });

  it('skips an archive repository with an unusable upload target and keeps the others', async () => {
    const world = await startWorld({
      standIn: {
        archiveRepos: {
          master: { upload_fqdn: 'archive.example.org/_upload', upload_method: 'https' },
          odd: { upload_fqdn: 'archive.example.org', upload_method: 'ftp' },
        },
      },
    });
    try {
      await world.connector.start();
      const stored = await waitFor('the upload targets to be stored', () => world.store.notes.targets, { timeoutMs: 5_000 });
      assert.deepEqual(Object.keys(stored.archive_repos), ['master']);
      assert.match(world.logs.map((line) => String(line['msg'])).join('\n'), /archive-info: skipping repository "odd": .*upload_method/);
    } finally {
      await world.close();
    }
  });

  it('asks Lighthouse at once when a builder announces a free slot, not at its next poll', async () => {
    const world = await startWorld({ pollInterval: 60 });
    try {
      const uuid = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      await world.heartbeat({ slots: 1, busy: 1 });
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'archive-info'));
      await world.idle();
      assert.equal(world.standIn?.requests.filter((r) => r.request === 'job').length, 0, 'no slot: no job request');
      await world.heartbeat({ slots: 1, busy: 0 });
      world.announce();
      // The next poll would be a minute away: the job request comes from the announcement.
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job'), 10_000);
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'job-accepted' || r.request === 'job'), 1_000);
      assert.equal(world.standIn?.board.get(uuid)?.status, 'SCHEDULED');
    } finally {
      await world.close();
    }
  });

  it('is the one connector of its Redis: a second one waits until the first stops', async () => {
    await withWorld('', async (world) => {
      await world.connector.start();
      const second = await startWorld({ connectorToml: '', share: world });
      try {
        const starting = second.connector.start();
        const log = () => second.logs.map((line) => String(line['msg'])).join('\n');
        await waitFor(
          'the second connector to wait',
          () => /another connector \(.+:\d+\) runs on this Redis; waiting until it stops/.test(log()),
          {
            timeoutMs: 8_000,
          },
        );
        assert.match(log(), /another connector \(.+:\d+\) runs on this Redis; waiting until it stops/);
        assert.equal(second.standIn?.requests.length, 0, 'the waiting connector asks Lighthouse nothing');
        await world.connector.close();
        // The waiting connector tries the lock again one renewal interval later.
        await world.clock.advance(CONNECTOR_LOCK_RENEW_MS);
        await starting;
        await second.standIn?.waitFor((requests) => requests.some((r) => r.request === 'archive-info'), 20_000);
        assert.match(second.logs.map((line) => String(line['msg'])).join('\n'), /the other connector stopped: taking over/);
      } finally {
        await second.close();
      }
    });
  });
});
