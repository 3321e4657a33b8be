import type { Queue } from 'bullmq';
import type { Redis } from '@spark/service';
import { builderHeartbeatPattern, builderHeartbeatSchema, type BuilderHeartbeat } from '@spark/protocol';
import type { Logger } from '@spark/service';

/** What the live builders can take now. */
export interface BuilderCapacity {
  /** Jobs we may still ask for: free slots of accepting builders minus jobs already waiting in `build`. */
  available: number;
  /** Job kinds served by accepting builders with a free slot. */
  kinds: string[];
  /** Architectures served by accepting builders with a free slot. */
  architectures: string[];
}

/** Reads every live heartbeat under `prefix` (SCAN, then GET); malformed ones are logged and skipped. */
export async function readHeartbeats(redis: Redis, prefix: string, logger: Logger): Promise<BuilderHeartbeat[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', builderHeartbeatPattern(prefix), 'COUNT', 100);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  const values = await redis.mget(...keys);
  const beats: BuilderHeartbeat[] = [];
  values.forEach((value, index) => {
    if (value === null) return;
    try {
      beats.push(builderHeartbeatSchema.parse(JSON.parse(value)));
    } catch (error) {
      logger.warn({ key: keys[index], err: error }, 'ignoring a malformed builder heartbeat');
    }
  });
  return beats;
}

/**
 * Computes how many jobs to ask Lighthouse for, so that we never hoard: the
 * free slots of accepting builders, less the jobs already waiting in `build`.
 * Busy slots count as the larger of what builders report and what BullMQ has
 * active, since a heartbeat can lag a job's start by one interval.
 */
export async function readBuilderCapacity(redis: Redis, prefix: string, buildQueue: Queue, logger: Logger): Promise<BuilderCapacity> {
  const beats = (await readHeartbeats(redis, prefix, logger)).filter((beat) => beat.accepting);
  const counts = await buildQueue.getJobCounts('waiting', 'prioritized', 'delayed', 'paused', 'active');
  const waiting = (counts['waiting'] ?? 0) + (counts['prioritized'] ?? 0) + (counts['delayed'] ?? 0) + (counts['paused'] ?? 0);
  const slots = beats.reduce((sum, beat) => sum + beat.slots, 0);
  const busy = Math.max(
    beats.reduce((sum, beat) => sum + beat.busy, 0),
    counts['active'] ?? 0,
  );
  const open = beats.filter((beat) => beat.busy < beat.slots);
  return {
    available: slots - busy - waiting,
    kinds: [...new Set(open.flatMap((beat) => beat.kinds))],
    architectures: [...new Set(open.flatMap((beat) => beat.architectures))],
  };
}
