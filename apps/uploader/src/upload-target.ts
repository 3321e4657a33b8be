import type { Redis } from 'ioredis';
import { archiveTargetsKey, storedArchiveTargetsSchema, type ArchiveTarget } from '@spark/protocol';

/** No usable upload target for a job's repository; the job fails with this message and keeps its files. */
export class NoUploadTargetError extends Error {
  override name = 'NoUploadTargetError';
}

/**
 * The upload target of `repo` from the `archive-info` reply the connector
 * stored under `archiveTargetsKey(prefix)`, checked again here since it
 * crossed a process boundary.
 */
export async function lookUpTarget(redis: Redis, prefix: string, repo: string): Promise<ArchiveTarget> {
  const key = archiveTargetsKey(prefix);
  const raw = await redis.get(key);
  if (raw === null) {
    throw new NoUploadTargetError(
      `no upload targets known yet (${key} is empty: the connector stores them from Lighthouse's archive-info)`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new NoUploadTargetError(`${key} does not hold JSON`);
  }
  const stored = storedArchiveTargetsSchema.safeParse(parsed);
  if (!stored.success) {
    throw new NoUploadTargetError(
      `${key} does not hold valid upload targets: ${stored.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`,
    );
  }
  const target = stored.data.archive_repos[repo];
  if (!target) {
    const known = Object.keys(stored.data.archive_repos);
    throw new NoUploadTargetError(
      `Lighthouse names no upload target for repository ${repo} (known: ${known.length ? known.join(', ') : 'none'})`,
    );
  }
  return target;
}
