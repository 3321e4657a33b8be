import {
  archiveTargetsKey,
  JOB_RECORD_TTL_S,
  signerRoundKey,
  storedArchiveTargetsSchema,
  type JobRecord,
  type JobRound,
} from '@spark/protocol';
import { readJobRecord, type Redis } from '@spark/service';

/**
 * What the signer reads and notes in Redis besides its queues: the job records
 * the connector wrote, the archive's upload targets, and the rounds the signer
 * took. Every method rejects on a Redis error.
 */
export interface SignerRecords {
  /** The job record of `uuid`, or null when there is none (or it is unreadable). */
  read(uuid: string): Promise<JobRecord | null>;
  /** `<method>://<fqdn>` of `repo` from the stored `archive-info`, or null when there is none. */
  uploadTarget(repo: string): Promise<string | null>;
  /** Notes that the signer took `round`: from then on the relay takes no rejection of it from the builder. */
  takeRound(round: JobRound): Promise<void>;
}

/** The signer's records in Redis under `prefix`. */
export function redisSignerRecords(redis: Redis, prefix: string): SignerRecords {
  return {
    read: (uuid) => readJobRecord(redis, prefix, uuid),
    async uploadTarget(repo) {
      const text = await redis.get(archiveTargetsKey(prefix));
      if (text === null) return null;
      try {
        const target = storedArchiveTargetsSchema.parse(JSON.parse(text)).archive_repos[repo];
        return target ? `${target.upload_method}://${target.upload_fqdn}` : null;
      } catch {
        return null;
      }
    },
    async takeRound(round) {
      await redis.set(signerRoundKey(prefix, round.uuid), round.round, 'EX', JOB_RECORD_TTL_S);
    },
  };
}
