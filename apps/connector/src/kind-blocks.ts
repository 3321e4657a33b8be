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

/** The kinds left out of job requests now; expired blocks are removed. */
export async function readBlockedKinds(redis: Redis, prefix: string, now: number, logger: Logger): Promise<BlockedKind[]> {
  const all = await redis.hgetall(blockedKindsKey(prefix));
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
      await redis.hdel(blockedKindsKey(prefix), kind);
      if (entry) logger.info({ kind }, `asking for ${kind} jobs again`);
    }
  }
  return blocked;
}

/** Leaves `block.kind` out of job requests until `block.until`. */
export async function blockKind(redis: Redis, prefix: string, block: BlockedKind, logger: Logger): Promise<void> {
  await redis.hset(blockedKindsKey(prefix), block.kind, JSON.stringify(block));
  logger.warn(
    { kind: block.kind, jobId: block.uuid, until: new Date(block.until).toISOString() },
    `not asking for ${block.kind} jobs for ${Math.round((block.until - Date.now()) / 1000)} s: job ${block.uuid} came back after this worker rejected it (${block.reason}); other kinds go on`,
  );
}
