import { QUEUE_NAMES, type QueueName } from '@spark/protocol';
import { builderHeartbeat } from '@spark/testing';
import type { HostStatus, JobInFlight, QueueCounts } from '../src/status/collect-status.js';

/** The time of every host report built here. */
export const NOW = Date.UTC(2026, 11, 7, 12, 0, 0);
export const MIN = 60_000;
export const UUID = '8c0e3d4a-5b6f-4a7e-9d21-3f0b9c1e2a45';

/** A healthy host as `spark status` reads it from Redis (a live builder, Lighthouse answering, nothing in flight), with `overrides`. */
export function hostStatus(overrides: Partial<HostStatus> = {}): HostStatus {
  const empty: QueueCounts = { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 };
  return {
    redis: 'redis://127.0.0.1:6379',
    prefix: 'spark',
    queues: Object.fromEntries(QUEUE_NAMES.map((name) => [name, empty])) as Record<QueueName, QueueCounts>,
    builders: [{ ...builderHeartbeat({ id: 'hydrogen@1', at: NOW - 5_000 }), ageMs: 5_000 }],
    lighthouse: { server: 'tcp://lighthouse:5570', lastContactAt: NOW - 10_000, outageSince: null, lastError: null },
    jobs: [],
    blockedKinds: [],
    unreadable: [],
    ...overrides,
  };
}

/** A job of {@link UUID}, waiting to be built, with `overrides`. */
export function jobInFlight(overrides: Partial<JobInFlight>): JobInFlight {
  return {
    uuid: UUID,
    round: '1',
    stage: 'build',
    state: 'waiting',
    ageMs: 0,
    attemptsMade: 0,
    failedReason: null,
    upload: null,
    sign: null,
    ...overrides,
  };
}
