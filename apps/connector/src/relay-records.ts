import {
  readJobRecord,
  recordExcerptShown,
  recordHandOut,
  recordRoundEnd,
  recordRoundEnding,
  type Redis,
  type RoundEnd,
} from '@spark/service';
import { signerRoundKey, type ExcerptPosition, type Job, type JobRecord, type JobRound } from '@spark/protocol';

/**
 * What the report relay reads and notes about the jobs Lighthouse handed out
 * here (the job records, and the rounds the signer took). Every method
 * rejects on a Redis error.
 */
export interface RelayRecords {
  /** The job record of `uuid`, or null when there is none (or it is unreadable). */
  read(uuid: string): Promise<JobRecord | null>;
  /** The latest round of `uuid` the signer took, or null. */
  signerRound(uuid: string): Promise<string | null>;
  /** Notes that the end of `round` is about to be sent; only the record's current round is noted. */
  recordEnding(round: JobRound): Promise<void>;
  /** Notes that `round` ended at Lighthouse, at `at` (ms); only the record's current round is noted. */
  recordEnd(round: JobRound, end: RoundEnd, at: number): Promise<void>;
  /** Notes that the excerpt at `position` of `round` is about to be sent; only the record's current round is noted. */
  recordExcerpt(round: JobRound, position: ExcerptPosition): Promise<void>;
}

/**
 * The job records as the connector keeps them: what the relay reads and
 * notes, and the hand-outs the job fetcher records. Each change is a
 * compare-and-set on the record (`updateJobRecord`), so a hand-out and a note
 * of the relay that come at once both hold.
 */
export interface JobRecords extends RelayRecords {
  /** Records a hand-out of `job` received at `at` (ms) as its new round, after the rounds before; resolves with the new record. */
  recordHandOut(job: Job, at: number): Promise<JobRecord>;
}

/** The job records and signer rounds in Redis under `prefix`. */
export function redisJobRecords(redis: Redis, prefix: string): JobRecords {
  return {
    recordHandOut: (job, at) => recordHandOut(redis, prefix, job, at),
    read: (uuid) => readJobRecord(redis, prefix, uuid),
    signerRound: (uuid) => redis.get(signerRoundKey(prefix, uuid)),
    recordEnding: (round) => recordRoundEnding(redis, prefix, round),
    recordEnd: (round, end, at) => recordRoundEnd(redis, prefix, round, end, at),
    recordExcerpt: (round, position) => recordExcerptShown(redis, prefix, round, position),
  };
}
