import type { Redis } from '@spark/service';
import type { Logger } from '@spark/service';
import { archiveInfoReplySchema, archiveTargetsKey, describeIssues, errorReplySchema, type StoredArchiveTargets } from '@spark/protocol';
import { UnreadableReply, type LighthouseLink } from './lighthouse-link.js';

/**
 * Asks Lighthouse for `archive-info` until it answers and stores a valid
 * reply at `<prefix>:archive-targets` for the uploader. Resolves true when
 * targets were stored; an error, malformed or unreadable reply is logged and
 * leaves the stored targets as they were (false).
 */
export async function refreshArchiveTargets(
  link: LighthouseLink,
  redis: Redis,
  prefix: string,
  logger: Logger,
  signal: AbortSignal,
): Promise<boolean> {
  let reply: unknown;
  try {
    reply = await link.requestUntilAnswered({ request: 'archive-info' }, signal);
  } catch (error) {
    // Lighthouse answered, but with a frame we cannot read: like a malformed reply, not a reason to exit.
    if (!(error instanceof UnreadableReply)) throw error;
    logger.error(`archive-info: ${error.message}; keeping the stored upload targets`);
    return false;
  }
  const error = errorReplySchema.safeParse(reply);
  if (error.success) {
    logger.error(`Lighthouse refused archive-info: ${error.data.error}`);
    return false;
  }
  const info = archiveInfoReplySchema.safeParse(reply);
  if (!info.success) {
    logger.error(`ignoring a malformed archive-info reply: ${describeIssues(info.error)}`);
    return false;
  }
  const stored: StoredArchiveTargets = { ...info.data, receivedAt: Date.now() };
  await redis.set(archiveTargetsKey(prefix), JSON.stringify(stored));
  logger.info({ repos: Object.keys(info.data.archive_repos) }, 'stored the upload targets from archive-info');
  return true;
}
