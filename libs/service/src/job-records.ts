import type { Redis } from 'ioredis';
import {
  dscFileName,
  JOB_RECORD_TTL_S,
  jobRecordKey,
  jobRecordSchema,
  newRound,
  type ExcerptPosition,
  type Job,
  type JobRecord,
  type JobRound,
} from '@spark/protocol';

/**
 * Records a hand-out of `job` received at `at` (ms) as its new round and
 * returns that round. The round is the hand-out time, made later than the
 * round recorded before when the clock has not moved past it (job-ids.ts).
 */
export async function recordHandOut(redis: Redis, prefix: string, job: Job, at: number): Promise<JobRecord> {
  const written = await updateJobRecord(redis, prefix, job.uuid, (previous) => handOutRecord(previous, job, at));
  return written as JobRecord;
}

/** The record of a new hand-out of `job` at `at`, after `previous` ({@link recordHandOut}). */
export function handOutRecord(previous: JobRecord | null, job: Job, at: number): JobRecord {
  const { round } = newRound(job.uuid, at, previous?.round);
  return {
    uuid: job.uuid.toLowerCase(),
    round,
    kind: job.kind,
    architecture: job.architecture,
    repo: job.repo,
    package: job.kind === 'package-build' ? job.data.package_name : null,
    version: job.kind === 'package-build' ? job.data.package_version : null,
    suite: job.data.suite,
    doIndep: job.kind === 'package-build' ? job.data.do_indep : null,
    dscName: job.kind === 'package-build' ? dscFileName(job.data.dsc_url) : null,
    dscSha256: job.kind === 'package-build' ? job.data.sha256sum : null,
    receivedAt: at,
    // What earlier rounds ended in here stays with the job until a round of it ends otherwise.
    rejections: previous?.rejections ?? 0,
    firstRejectedAt: previous?.firstRejectedAt ?? null,
    lastRejectedAt: previous?.lastRejectedAt ?? null,
    lastRejection: previous?.lastRejection ?? null,
    needsOperator: previous?.needsOperator ?? false,
    endedRound: null,
  };
}

/** Sets KEYS[1] to ARGV[2] (expiring in ARGV[3] s) only while it still holds ARGV[1] ('' for no key); 1 when set. */
const COMPARE_AND_SET = `local now = redis.call('GET', KEYS[1])
if (now == false and ARGV[1] == '') or now == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0`;

/** How often {@link updateJobRecord} reads again after another write came between its read and its write. */
const UPDATE_TRIES = 20;

/**
 * Reads the job record of `uuid`, passes it to `change` and writes what it
 * returns (nothing when it returns null), only if the record is still as read:
 * when another write came in between (a new hand-out while the relay notes a
 * report), it reads again and asks `change` again, so that neither write is
 * lost. Resolves with what was written, or null.
 */
export async function updateJobRecord(
  redis: Redis,
  prefix: string,
  uuid: string,
  change: (record: JobRecord | null) => JobRecord | null | Promise<JobRecord | null>,
): Promise<JobRecord | null> {
  const key = jobRecordKey(prefix, uuid);
  for (let attempt = 1; ; attempt++) {
    const text = await redis.get(key);
    const next = await change(parseJobRecord(text));
    if (!next) return null;
    const set = await redis.eval(COMPARE_AND_SET, 1, key, text ?? '', JSON.stringify(next), JOB_RECORD_TTL_S);
    if (set === 1) return next;
    if (attempt >= UPDATE_TRIES) throw new Error(`job record ${uuid}: changed under every one of ${UPDATE_TRIES} updates`);
  }
}

function parseJobRecord(text: string | null): JobRecord | null {
  if (text === null) return null;
  try {
    return jobRecordSchema.parse(JSON.parse(text));
  } catch {
    return null;
  }
}

/** The job record of `uuid`, or null when there is none or it is unreadable. */
export async function readJobRecord(redis: Redis, prefix: string, uuid: string): Promise<JobRecord | null> {
  return parseJobRecord(await redis.get(jobRecordKey(prefix, uuid)));
}

/**
 * Notes in the job record that a round ended at Lighthouse, and how: a
 * delivered rejection adds to the job's rejection history; a success or
 * failure clears it. Only the record's current round is noted (an earlier
 * round's report says nothing about the new hand-out).
 */
export async function recordRoundEnd(redis: Redis, prefix: string, round: JobRound, end: RoundEnd, at: number): Promise<void> {
  await updateJobRecord(redis, prefix, round.uuid, (record) => roundEndedRecord(record, round, end, at));
}

/** How a round ended at Lighthouse. */
export type RoundEnd = { kind: 'rejected'; reason: string; needsOperator: boolean } | { kind: 'success' | 'failed' };

/** `record` with the end of `round` noted ({@link recordRoundEnd}), or null when `record` is not of that round. */
export function roundEndedRecord(record: JobRecord | null, round: JobRound, end: RoundEnd, at: number): JobRecord | null {
  if (!record || record.round !== round.round) return null;
  return end.kind === 'rejected'
    ? {
        ...record,
        rejections: record.rejections + 1,
        firstRejectedAt: record.firstRejectedAt ?? at,
        lastRejectedAt: at,
        lastRejection: end.reason,
        needsOperator: end.needsOperator,
        endedRound: round.round,
      }
    : {
        ...record,
        rejections: 0,
        firstRejectedAt: null,
        lastRejectedAt: null,
        lastRejection: null,
        needsOperator: false,
        endedRound: round.round,
      };
}

/**
 * Notes in the job record that the status excerpt at `position` of `round` is
 * about to be sent to Lighthouse (the relay sends no excerpt that comes before
 * it). Only the record's current round is noted.
 */
export async function recordExcerptShown(redis: Redis, prefix: string, round: JobRound, position: ExcerptPosition): Promise<void> {
  await updateJobRecord(redis, prefix, round.uuid, (record) => excerptShownRecord(record, round, position));
}

/**
 * Notes in the job record that the end of `round` is about to be sent to
 * Lighthouse (the relay sends no excerpt of the round after it). Only the
 * record's current round is noted.
 */
export async function recordRoundEnding(redis: Redis, prefix: string, round: JobRound): Promise<void> {
  await updateJobRecord(redis, prefix, round.uuid, (record) => roundEndingRecord(record, round));
}

/** `record` with the end of `round` noted as being sent ({@link recordRoundEnding}), or null when `record` is not of that round. */
export function roundEndingRecord(record: JobRecord | null, round: JobRound): JobRecord | null {
  if (!record || record.round !== round.round) return null;
  return { ...record, endingRound: round.round };
}

/** `record` with the excerpt at `position` of `round` noted ({@link recordExcerptShown}), or null when `record` is not of that round. */
export function excerptShownRecord(record: JobRecord | null, round: JobRound, position: ExcerptPosition): JobRecord | null {
  if (!record || record.round !== round.round) return null;
  return { ...record, shownExcerpt: { round: round.round, sender: position.sender, seq: position.seq } };
}
