import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { parseJobId, roundKey, type JobRound } from '@spark/protocol';

/**
 * The highest sequence number of a status excerpt of `round` still in the
 * report queue `reports` (0 when there is none). A stage that sends excerpts
 * again (the uploader after a restart, with its progress lost) continues after
 * them: a reused number is the id of a report already queued, and BullMQ drops
 * the new one.
 * Scans the queue's keys rather than counting up from 1, since completed
 * reports are trimmed oldest first (`KEEP_COMPLETED`) and a long build's first
 * excerpts may be gone while its later ones are kept. `redis` is the
 * connection the queue's keys live on.
 */
export async function lastStatusSeq(redis: Redis, reports: Queue, round: JobRound): Promise<number> {
  const jobKeyPrefix = reports.toKey('');
  const pattern = `${reports.toKey(roundKey(round))}.*`;
  let last = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      const id = parseJobId(key.slice(jobKeyPrefix.length));
      if (id?.type === 'report' && id.slot.kind === 'status' && id.uuid === round.uuid && id.round === round.round) {
        last = Math.max(last, id.slot.seq);
      }
    }
  } while (cursor !== '0');
  return last;
}
