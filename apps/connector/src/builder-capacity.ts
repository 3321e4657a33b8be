import type { Queue } from 'bullmq';
import { readBuilderHeartbeats, type Logger, type Redis } from '@spark/service';
import type { BuilderHeartbeat } from '@spark/protocol';

/** What the live builders can take now. */
export interface BuilderCapacity {
  /** Jobs we may still ask for: free slots of accepting builders minus jobs already waiting in `build`. */
  available: number;
  /** Job kinds served by accepting builders with a free slot. */
  kinds: string[];
  /** Architectures served by accepting builders with a free slot. */
  architectures: string[];
}

/** Reads every live heartbeat; removes malformed ones (logged) and those of builders long gone. */
export async function readHeartbeats(redis: Redis, prefix: string, logger: Logger): Promise<BuilderHeartbeat[]> {
  return readBuilderHeartbeats(redis, prefix, {
    prune: true,
    onMalformed: (id, error) => logger.warn({ builder: id, err: error }, 'removing a malformed builder heartbeat'),
  });
}

/** Job counts the capacity rule needs, from the queues. */
export interface PipelineCounts {
  /** Jobs in `build` no builder has started (waiting, prioritized, delayed, paused). */
  buildWaiting: number;
  /** Jobs in `build` a builder is running. */
  buildActive: number;
  /** Jobs past the build that Lighthouse has not heard the end of: in `sign` and `upload`, not finished. */
  pastBuild: number;
}

/**
 * How many jobs to ask Lighthouse for, so that the worker never hoards
 * (docs/architecture.md, "Capacity"):
 *
 * - the free slots of accepting builders — a draining builder's jobs use only
 *   its own slots — less jobs BullMQ runs that no heartbeat counts yet (a
 *   heartbeat lags a job's start by up to one interval), less jobs waiting in
 *   `build`;
 * - less the jobs past the build beyond an allowance of one per builder slot:
 *   uploads may overlap the next builds, but when signing or uploading stalls
 *   (an archive that refuses everything) the worker stops taking work, and the
 *   jobs it has not started stay with Lighthouse for other workers.
 */
export function computeCapacity(beats: readonly BuilderHeartbeat[], counts: PipelineCounts): BuilderCapacity {
  const accepting = beats.filter((beat) => beat.accepting);
  const free = accepting.reduce((sum, beat) => sum + Math.max(0, beat.slots - beat.busy), 0);
  const uncounted = Math.max(0, counts.buildActive - beats.reduce((sum, beat) => sum + beat.busy, 0));
  const allowance = beats.reduce((sum, beat) => sum + beat.slots, 0);
  const backlog = Math.max(0, counts.pastBuild - allowance);
  const open = accepting.filter((beat) => beat.busy < beat.slots);
  return {
    available: free - uncounted - counts.buildWaiting - backlog,
    kinds: [...new Set(open.flatMap((beat) => beat.kinds))],
    architectures: [...new Set(open.flatMap((beat) => beat.architectures))],
  };
}

const UNFINISHED = ['waiting', 'prioritized', 'delayed', 'paused', 'active'] as const;

/** Reads the heartbeats and queue counts and applies {@link computeCapacity}. */
export async function readBuilderCapacity(
  redis: Redis,
  prefix: string,
  queues: { build: Queue; sign: Queue; upload: Queue },
  logger: Logger,
): Promise<BuilderCapacity> {
  const beats = await readHeartbeats(redis, prefix, logger);
  const [build, sign, upload] = await Promise.all(
    [queues.build, queues.sign, queues.upload].map((queue) => queue.getJobCounts(...UNFINISHED)),
  );
  const sum = (counts: Record<string, number> | undefined, states: readonly string[]) =>
    states.reduce((total, state) => total + (counts?.[state] ?? 0), 0);
  return computeCapacity(beats, {
    buildWaiting: sum(build, ['waiting', 'prioritized', 'delayed', 'paused']),
    buildActive: sum(build, ['active']),
    pastBuild: sum(sign, UNFINISHED) + sum(upload, UNFINISHED),
  });
}
