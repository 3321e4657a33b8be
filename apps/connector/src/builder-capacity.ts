import { builderCapacityChannel, type BuilderHeartbeat } from '@spark/protocol';
import { readBuilderHeartbeats, type Logger, type Redis, type WatchedQueue } from '@spark/service';

/** What the live builders can take now. */
export interface BuilderCapacity {
  /** Jobs we may still ask for: free slots of accepting builders minus jobs already waiting in `build`. */
  available: number;
  /** Job kinds served by accepting builders with a free slot. */
  kinds: string[];
  /** Architectures served by accepting builders with a free slot. */
  architectures: string[];
}

/**
 * The builders as the connector hears of them: their heartbeats, and their
 * announcements that a slot freed or a builder registered. Rejects on a
 * Redis error.
 */
export interface BuilderBoard {
  /** The heartbeats of the live builders at `now` (ms); malformed ones and those of builders long gone are removed. */
  heartbeats(now: number): Promise<BuilderHeartbeat[]>;
  /** Calls `listener` on each capacity announcement from now on; resolves once listening. */
  listen(listener: () => void): Promise<void>;
}

/**
 * The builders' heartbeats in Redis under `prefix` (read on `redis`), and
 * their announcements on the capacity channel, heard on `subscriber` (a
 * connection of its own: it is in subscriber mode once listening).
 */
export function redisBuilderBoard(redis: Redis, subscriber: Redis, prefix: string, logger: Logger): BuilderBoard {
  return {
    heartbeats: (now) =>
      readBuilderHeartbeats(redis, prefix, {
        now,
        prune: true,
        onMalformed: (id, error) => logger.warn({ builder: id, err: error }, 'removing a malformed builder heartbeat'),
      }),
    async listen(listener) {
      subscriber.on('message', () => listener());
      await subscriber.subscribe(builderCapacityChannel(prefix));
    },
  };
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

/** Reads the heartbeats at `now` and the queues' loads and applies {@link computeCapacity}. */
export async function readBuilderCapacity(
  builders: BuilderBoard,
  queues: { build: WatchedQueue; sign: WatchedQueue; upload: WatchedQueue },
  now: number,
): Promise<BuilderCapacity> {
  const beats = await builders.heartbeats(now);
  const [build, sign, upload] = await Promise.all([queues.build, queues.sign, queues.upload].map((queue) => queue.load()));
  return computeCapacity(beats, {
    buildWaiting: build?.unstarted ?? 0,
    buildActive: build?.active ?? 0,
    pastBuild: (sign ? sign.unstarted + sign.active : 0) + (upload ? upload.unstarted + upload.active : 0),
  });
}
