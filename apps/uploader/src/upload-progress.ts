import type { Redis } from 'ioredis';
import { roundKey, type JobRound } from '@spark/protocol';

/**
 * `<prefix>:upload-progress:<uuid>.<round>`: a hash recording, per file name, that
 * this round has `sent` it (a PUT was started: the archive may have stored it
 * even if we never saw the answer) or that it is `done` (the archive has it),
 * and under `:reported` that the final report is queued. Lives in Redis so a
 * killed uploader resumes where it was instead of sending files twice. File
 * names start with an alphanumeric (FILE_NAME), so `:reported` never clashes.
 */
export function uploadProgressKey(prefix: string, round: JobRound): string {
  return `${prefix}:upload-progress:${roundKey(round)}`;
}

const REPORTED = ':reported';
/** The record outlives the job long enough for any retry, then goes by itself. */
const PROGRESS_TTL_SECONDS = 30 * 24 * 3600;

/** One job's upload progress in Redis. */
export interface UploadProgress {
  /** State of every file the job has touched. */
  files(): Promise<Map<string, 'sent' | 'done'>>;
  markSent(name: string): Promise<void>;
  markDone(name: string): Promise<void>;
  isReported(): Promise<boolean>;
  markReported(): Promise<void>;
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
        if (name !== REPORTED && (state === 'sent' || state === 'done')) files.set(name, state);
      }
      return files;
    },
    markSent: (name) => set(name, 'sent'),
    markDone: (name) => set(name, 'done'),
    async isReported() {
      return (await redis.hexists(key, REPORTED)) === 1;
    },
    markReported: () => set(REPORTED, '1'),
  };
}
