import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BuilderHeartbeat } from '@spark/protocol';
import { FakeQueue } from '@spark/testing';
import { computeCapacity, readBuilderCapacity, type PipelineCounts } from '../src/builder-capacity.js';
import { FakeBuilderBoard } from './fake-connector-world.js';

function beat(id: string, slots: number, busy: number, accepting = true): BuilderHeartbeat {
  return { id, slots, busy, accepting, kinds: ['package-build'], architectures: ['amd64'], at: 0 };
}
const idle: PipelineCounts = { buildWaiting: 0, buildActive: 0, pastBuild: 0 };

describe('computeCapacity (no Redis: the rule alone)', () => {
  it('asks for the free slots of accepting builders, less what waits in build', () => {
    assert.equal(computeCapacity([beat('a', 2, 0), beat('b', 1, 0)], idle).available, 3);
    assert.equal(computeCapacity([beat('a', 2, 0), beat('b', 1, 0)], { ...idle, buildWaiting: 2 }).available, 1);
  });

  it("lets a free builder take work while another drains: the draining builder's jobs use only its own slots", () => {
    const capacity = computeCapacity([beat('draining', 2, 2, false), beat('free', 1, 0)], { ...idle, buildActive: 2 });
    assert.equal(capacity.available, 1);
    assert.deepEqual(capacity.kinds, ['package-build']);
  });

  it('counts a job BullMQ runs before any heartbeat counts it', () => {
    assert.equal(computeCapacity([beat('a', 2, 0)], { ...idle, buildActive: 1 }).available, 1);
  });

  it('lets uploads overlap the next builds up to one per slot, then stops taking work', () => {
    const beats = [beat('a', 2, 0)];
    assert.equal(computeCapacity(beats, { ...idle, pastBuild: 2 }).available, 2, 'within the allowance');
    assert.equal(computeCapacity(beats, { ...idle, pastBuild: 3 }).available, 1);
    assert.ok(computeCapacity(beats, { ...idle, pastBuild: 4 }).available <= 0, 'an archive refusing everything stops the worker');
  });

  it('advertises only what builders with a free slot serve', () => {
    const full: BuilderHeartbeat = { ...beat('full', 1, 1), kinds: ['os-image-build'], architectures: ['arm64'] };
    const capacity = computeCapacity([full, beat('a', 1, 0)], { ...idle, buildActive: 1 });
    assert.deepEqual([capacity.kinds, capacity.architectures], [['package-build'], ['amd64']]);
  });
});

describe('readBuilderCapacity (on the in-memory queues and heartbeats)', () => {
  it('reads the live heartbeats and counts the queues: build waiting and active, sign and upload unfinished', async () => {
    const now = 1_700_000_000_000;
    const builders = new FakeBuilderBoard();
    builders.beat({ ...beat('a', 3, 0), at: now });
    // Silent for a minute: not counted.
    builders.beat({ ...beat('gone', 4, 0), at: now - 60_000 });
    const [build, sign, upload] = [new FakeQueue(), new FakeQueue(), new FakeQueue()];
    await build.add('package-build', {}, { jobId: 'waiting' });
    for (const id of ['s1', 's2']) await sign.add('sign', {}, { jobId: id });
    for (const id of ['u1', 'u2']) await upload.add('upload', {}, { jobId: id });
    // Free: 3 slots; less 1 waiting in build; 4 past the build, 1 beyond the allowance of 3.
    const capacity = await readBuilderCapacity(builders, { build, sign, upload }, now);
    assert.deepEqual(capacity, { available: 1, kinds: ['package-build'], architectures: ['amd64'] });
    assert.equal(builders.reads, 1);
  });
});
