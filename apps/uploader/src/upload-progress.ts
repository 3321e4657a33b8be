import type { Redis } from 'ioredis';
import { uploadOutcomeSchema, uploadProgressKey, type JobRound, type UploadOutcome } from '@spark/protocol';

/*
 * `uploadProgressKey` (libs/protocol redis-keys.ts): a hash recording, per file name, that
 * this round has `sent` it (a PUT was started: the archive may have stored it,
 * or part of it, even if we never saw the answer) or that it is `done` (the
 * archive has all of it); under `:reported` that the final report is queued,
 * under `:first-try` when the round's first try started (its deadline counts
 * from there), under `:tries` how many tries were made, under
 * `:failed-in-a-row` how many of the last ones failed without uploading a file, and under
 * `:status-seq` the last status excerpt the uploader queued. Lives in Redis so
 * a killed uploader resumes where it was instead of sending files twice or
 * starting its deadline over. File names start with an alphanumeric
 * (FILE_NAME), so the `:` fields never clash.
 */

const REPORTED = ':reported';
const FIRST_TRY = ':first-try';
const TRIES = ':tries';
const STATUS_SEQ = ':status-seq';
const STREAK = ':failed-in-a-row';
/** The record outlives the job long enough for any retry, then goes by itself. */
const PROGRESS_TTL_SECONDS = 30 * 24 * 3600;

/** One job's upload progress in Redis. */
export interface UploadProgress {
  /** State of every file the job has touched. */
  files(): Promise<Map<string, 'sent' | 'done'>>;
  markSent(name: string): Promise<void>;
  /** Forgets a `sent` mark: the archive refused the PUT before storing anything. */
  unmarkSent(name: string): Promise<void>;
  markDone(name: string): Promise<void>;
  /** How the job ended, once its final report is queued (null before). */
  reported(): Promise<UploadOutcome | null>;
  markReported(outcome: UploadOutcome): Promise<void>;
  /** Counts a new try; returns its number and when the round's first try started (ms since the epoch). */
  startTry(now: number): Promise<{ tries: number; firstTryAt: number }>;
  /**
   * Records a failed try; returns how many tries in a row have now failed without uploading a file
   * (`madeProgress`: this one uploaded some, so the count starts again at 1).
   */
  failedTry(madeProgress: boolean): Promise<number>;
  /** The last status excerpt sequence this round's uploader queued, or null before its first. */
  statusSeq(): Promise<number | null>;
  setStatusSeq(seq: number): Promise<void>;
}

/** The progress record of a round. */
export function uploadProgress(redis: Redis, prefix: string, round: JobRound): UploadProgress {
  const key = uploadProgressKey(prefix, round);
  const set = async (field: string, value: string) => {
    await redis.multi().hset(key, field, value).expire(key, PROGRESS_TTL_SECONDS).exec();
  };
  return {
    async files() {
      const all = await redis.hgetall(key);
      const files = new Map<string, 'sent' | 'done'>();
      for (const [name, state] of Object.entries(all)) {
        if (!name.startsWith(':') && (state === 'sent' || state === 'done')) files.set(name, state);
      }
      return files;
    },
    markSent: (name) => set(name, 'sent'),
    async unmarkSent(name) {
      // Only a `sent` mark: a file `done` stays done.
      await redis.eval("if redis.call('hget', KEYS[1], ARGV[1]) == 'sent' then redis.call('hdel', KEYS[1], ARGV[1]) end", 1, key, name);
    },
    markDone: (name) => set(name, 'done'),
    async reported() {
      const value = await redis.hget(key, REPORTED);
      if (value === null) return null;
      try {
        return uploadOutcomeSchema.parse(JSON.parse(value));
      } catch {
        // Written by an uploader that recorded only that it reported.
        return { result: 'uploaded', report: 'success' };
      }
    },
    markReported: (outcome) => set(REPORTED, JSON.stringify(outcome)),
    async startTry(now) {
      const replies = await redis
        .multi()
        .hsetnx(key, FIRST_TRY, String(now))
        .hincrby(key, TRIES, 1)
        .hget(key, FIRST_TRY)
        .expire(key, PROGRESS_TTL_SECONDS)
        .exec();
      const tries = Number(replies?.[1]?.[1]);
      const firstTryAt = Number(replies?.[2]?.[1]);
      return { tries: Number.isFinite(tries) ? tries : 1, firstTryAt: Number.isFinite(firstTryAt) ? firstTryAt : now };
    },
    async failedTry(madeProgress) {
      if (madeProgress) {
        await set(STREAK, '1');
        return 1;
      }
      const replies = await redis.multi().hincrby(key, STREAK, 1).expire(key, PROGRESS_TTL_SECONDS).exec();
      const streak = Number(replies?.[0]?.[1]);
      return Number.isFinite(streak) ? streak : 1;
    },
    async statusSeq() {
      const value = await redis.hget(key, STATUS_SEQ);
      return value === null ? null : Number(value);
    },
    setStatusSeq: (seq) => set(STATUS_SEQ, String(seq)),
  };
}
