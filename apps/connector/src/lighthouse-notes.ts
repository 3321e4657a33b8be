import type { Redis } from '@spark/service';
import {
  archiveTargetsKey,
  lighthouseStatusKey,
  storedArchiveTargetsSchema,
  type LighthouseStatus,
  type StoredArchiveTargets,
} from '@spark/protocol';

/**
 * What the connector notes for the other processes about Lighthouse: the
 * upload targets from `archive-info` (for the uploader and the signer) and
 * the state of the link (for `spark status`). Every method rejects on a Redis
 * error.
 */
export interface LighthouseNotes {
  storeTargets(targets: StoredArchiveTargets): Promise<void>;
  /** The stored upload targets, or null when there are none (or they do not match the schema). */
  storedTargets(): Promise<StoredArchiveTargets | null>;
  noteStatus(status: LighthouseStatus): Promise<void>;
}

/** The notes in Redis under `prefix`. */
export function redisLighthouseNotes(redis: Redis, prefix: string): LighthouseNotes {
  return {
    async storeTargets(targets) {
      await redis.set(archiveTargetsKey(prefix), JSON.stringify(targets));
    },
    async storedTargets() {
      const text = await redis.get(archiveTargetsKey(prefix));
      if (text === null) return null;
      const stored = storedArchiveTargetsSchema.safeParse(JSON.parse(text));
      return stored.success ? stored.data : null;
    },
    async noteStatus(status) {
      await redis.set(lighthouseStatusKey(prefix), JSON.stringify(status));
    },
  };
}
