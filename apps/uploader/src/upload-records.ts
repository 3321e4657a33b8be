import type { ArchiveTarget, JobRecord, JobRound } from '@spark/protocol';
import { readJobRecord, type Redis } from '@spark/service';
import { uploadProgress, type UploadProgress } from './upload-progress.js';
import { lookUpTarget } from './upload-target.js';

/**
 * What the uploader reads and notes in Redis besides its queues: the job
 * records the connector wrote, the archive's upload targets, and each round's
 * upload progress. Every method rejects on a Redis error.
 */
export interface UploadRecords {
  /** The job record of `uuid`, or null when there is none (or it is unreadable). */
  read(uuid: string): Promise<JobRecord | null>;
  /** The upload target of `repo`; throws a `NoUploadTargetError` saying why there is none. */
  target(repo: string): Promise<ArchiveTarget>;
  /** The upload progress of `round`. */
  progress(round: JobRound): UploadProgress;
}

/** The uploader's records in Redis under `prefix`. */
export function redisUploadRecords(redis: Redis, prefix: string): UploadRecords {
  return {
    read: (uuid) => readJobRecord(redis, prefix, uuid),
    target: (repo) => lookUpTarget(redis, prefix, repo),
    progress: (round) => uploadProgress(redis, prefix, round),
  };
}
