import type { Logger, Redis } from '@spark/service';
import type { Backoff } from '@spark/lighthouse';
import { blockedKindSchema, blockedKindsKey, type BlockedKind, type JobRecord } from '@spark/protocol';

/** Cool-down of a job this worker rejected: 30 s after the first rejection, doubled per rejection, up to 30 min. */
export const REJECTION_COOLDOWN: Backoff = { initialMs: 30_000, maxMs: 30 * 60_000 };

/** How long after its latest rejection a job is not taken again (ms), from how often this worker rejected it. */
export function rejectionCooldownMs(rejections: number, cooldown: Backoff = REJECTION_COOLDOWN): number {
  return Math.min(cooldown.maxMs, cooldown.initialMs * 2 ** Math.min(30, Math.max(0, rejections - 1)));
}

/**
 * True while a job this worker rejected is within its cool-down: Lighthouse
 * hands a rejected job out again at the next request (it is first in line), so
 * taking it at once would only reject it again, and starve the jobs behind it.
 */
export function inCooldown(record: JobRecord | null, now: number, cooldown?: Backoff): record is JobRecord & { lastRejectedAt: number } {
  return record?.lastRejectedAt != null && now < record.lastRejectedAt + rejectionCooldownMs(record.rejections, cooldown);
}

/**
 * Where the kinds left out of job requests are kept, one entry (a JSON
 * BlockedKind, as written) per kind. Rejects on a Redis error.
 */
export interface KindBlockStore {
  /** Every entry, by kind. */
  all(): Promise<Record<string, string>>;
  set(kind: string, entry: string): Promise<void>;
  remove(kind: string): Promise<void>;
}

/** The kind blocks in Redis under `prefix` (one hash). */
export function redisKindBlocks(redis: Redis, prefix: string): KindBlockStore {
  const key = blockedKindsKey(prefix);
  return {
    all: () => redis.hgetall(key),
    async set(kind, entry) {
      await redis.hset(key, kind, entry);
    },
    async remove(kind) {
      await redis.hdel(key, kind);
    },
  };
}

/** The kinds left out of job requests at `now` (ms); expired blocks are removed. */
export async function readBlockedKinds(store: KindBlockStore, now: number, logger: Logger): Promise<BlockedKind[]> {
  const all = await store.all();
  const blocked: BlockedKind[] = [];
  for (const [kind, text] of Object.entries(all)) {
    let entry: BlockedKind | null = null;
    try {
      entry = blockedKindSchema.parse(JSON.parse(text));
    } catch {
      logger.warn({ kind }, 'dropping an unreadable kind block');
    }
    if (entry && entry.until > now) {
      blocked.push(entry);
    } else {
      await store.remove(kind);
      if (entry) logger.info({ kind }, `asking for ${kind} jobs again`);
    }
  }
  return blocked;
}

/** Leaves `block.kind` out of job requests until `block.until`; `now` (ms) is for the log line. */
export async function blockKind(store: KindBlockStore, block: BlockedKind, now: number, logger: Logger): Promise<void> {
  await store.set(block.kind, JSON.stringify(block));
  logger.warn(
    { kind: block.kind, jobId: block.uuid, until: new Date(block.until).toISOString() },
    `not asking for ${block.kind} jobs for ${Math.round((block.until - now) / 1000)} s: job ${block.uuid} came back after this worker rejected it (${block.reason}); other kinds go on`,
  );
}
