import type { Queue } from 'bullmq';
import { parseJobId, type JobRound } from '@spark/protocol';

/** Every state a report can be in while BullMQ keeps it. */
const KEPT_STATES = ['waiting', 'prioritized', 'paused', 'delayed', 'active', 'completed', 'failed'] as const;

/**
 * The highest sequence number of a status excerpt of `round` still in the
 * report queue `reports` (0 when there is none). A stage that sends excerpts
 * again (the uploader after a restart, with its progress lost) continues after
 * them: a reused number is the id of a report already queued, and BullMQ drops
 * the new one.
 * Reads every id the queue keeps rather than counting up from 1, since
 * completed reports are trimmed oldest first (`KEEP_COMPLETED`) and a long
 * build's first excerpts may be gone while its later ones are kept. It reads
 * the queue's own lists and sets (its user may not list key names: no SCAN);
 * a report queue keeps at most KEEP_COMPLETED + KEEP_FAILED finished reports.
 */
export async function lastStatusSeq(reports: Queue, round: JobRound): Promise<number> {
  let last = 0;
  for (const jobId of await reports.getRanges([...KEPT_STATES], 0, -1)) {
    const id = parseJobId(jobId);
    if (id?.type === 'report' && id.slot.kind === 'status' && id.uuid === round.uuid && id.round === round.round) {
      last = Math.max(last, id.slot.seq);
    }
  }
  return last;
}
