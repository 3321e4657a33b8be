import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { packageJob, waitFor } from '@spark/testing';
import { startWorld, type World } from './harness.js';

/**
 * The connector asks Lighthouse the moment there is room, not at its next
 * poll. Every world here polls once an hour, so a job that reaches `build`
 * within the test got there because the connector was woken; the assertions
 * count the job requests it sent. The queues and records are in memory.
 */
const HOUR = 3600;

const jobRequests = (world: World) => world.standIn?.requests.filter((r) => r.request === 'job').length ?? 0;
const queued = (world: World, uuid: string) => world.record(uuid) !== null;

/** What a builder does when a slot frees or it registers: heartbeat, then a message on the capacity channel. */
async function announce(world: World, busy: number): Promise<void> {
  await world.heartbeat({ slots: 1, busy });
  world.announce();
}

describe('the connector asks for work the moment there is room (PollInterval one hour)', () => {
  it('a builder that registers after the connector started gets the waiting job with one request', async () => {
    const world = await startWorld({ pollInterval: HOUR });
    try {
      const uuid = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'archive-info'));
      await world.idle();
      assert.equal(jobRequests(world), 0, 'no builder: no job request');

      await announce(world, 0);
      await waitFor('the job to be queued for a builder', () => queued(world, uuid), { timeoutMs: 8_000 });
      assert.equal(jobRequests(world), 1, 'the announcement, not a poll, sent the one job request');
    } finally {
      await world.close();
    }
  });

  it('a slot that frees gets the next waiting job, and an announcement that finds no room sends nothing', async () => {
    const world = await startWorld({ pollInterval: HOUR });
    try {
      const first = randomUUID();
      const second = randomUUID();
      world.standIn?.addJob(packageJob(first));
      await announce(world, 0);
      await world.connector.start();
      await waitFor('the first job to be queued', () => queued(world, first), { timeoutMs: 8_000 });
      assert.equal(jobRequests(world), 1);

      // The builder takes it: its heartbeat says the slot is busy before the job leaves the build queue (a real
      // builder's job stays in the queue, active, while it runs). In the other order the connector, looking again
      // after queueing the first job, could see a free slot and an empty queue, and rightly ask for the second.
      await announce(world, 1);
      for (const job of world.store.build.jobs()) world.store.build.remove(job.id);
      world.standIn?.addJob(packageJob(second));
      const looked = world.store.builders.nextRead();
      await announce(world, 1);
      await looked;
      await world.idle();
      assert.equal(jobRequests(world), 1, 'a busy slot is no room: no request');

      await announce(world, 0);
      await waitFor('the second job to be queued', () => queued(world, second), { timeoutMs: 8_000 });
      assert.equal(jobRequests(world), 2, 'one request per freed slot');
      assert.equal(world.standIn?.board.get(second)?.status, 'SCHEDULED');
    } finally {
      await world.close();
    }
  });

  it('an upload that ends makes room when uploads held the worker back, and the connector asks at once', async () => {
    const world = await startWorld({ pollInterval: HOUR });
    const uploads = world.store.upload;
    try {
      const uuid = randomUUID();
      world.standIn?.addJob(packageJob(uuid));
      // One slot, free, but two jobs past their build: one more than the allowance of one per slot.
      await uploads.add('upload', { n: 1 }, { jobId: 'u1' });
      await uploads.add('upload', { n: 2 }, { jobId: 'u2' });
      await announce(world, 0);
      await world.connector.start();
      await world.standIn?.waitFor((requests) => requests.some((r) => r.request === 'archive-info'));
      await world.idle();
      assert.equal(jobRequests(world), 0, 'uploads hold the worker back: no request');

      // The uploader finishes one upload (and announces nothing: it is not a builder).
      let done = 0;
      // The uploader's worker, never closed: the second upload never ends (a promise with no timer behind it, so the test process can exit).
      uploads.inbox().run(
        async () => {
          if (++done > 1) await new Promise(() => undefined);
        },
        () => undefined,
      );
      await waitFor('the job to be queued for a builder', () => queued(world, uuid), { timeoutMs: 8_000 });
      assert.equal(jobRequests(world), 1);
    } finally {
      await world.close();
    }
  });
});
