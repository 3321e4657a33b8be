import type { Logger } from '@spark/service';
import { z } from 'zod';
import { archiveInfoReplySchema, describeIssues, errorReplySchema, type ArchiveInfo, type StoredArchiveTargets } from '@spark/protocol';
import { UnreadableReply, type LighthouseLink } from '@spark/lighthouse';
import type { LighthouseNotes } from './lighthouse-notes.js';

/**
 * Asks Lighthouse for `archive-info` until it answers and stores a valid
 * reply in `notes` (at `<prefix>:archive-targets`) for the uploader, received at `now()`. Resolves true when
 * targets were stored; an error, malformed or unreadable reply is logged and
 * leaves the stored targets as they were (false).
 */
export async function refreshArchiveTargets(
  link: LighthouseLink,
  notes: LighthouseNotes,
  now: () => number,
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
  const info = z.object({ archive_repos: z.record(z.string(), z.unknown()) }).safeParse(reply);
  if (!info.success) {
    logger.error(`ignoring a malformed archive-info reply: ${describeIssues(info.error)}`);
    return false;
  }
  // One odd repository must not block the others (spark skips it too).
  const usable: ArchiveInfo['archive_repos'] = {};
  for (const [repo, target] of Object.entries(info.data.archive_repos)) {
    const checked = archiveInfoReplySchema.safeParse({ archive_repos: { [repo]: target } });
    if (checked.success) Object.assign(usable, checked.data.archive_repos);
    else
      logger.error({ repo }, `archive-info: skipping repository ${JSON.stringify(repo).slice(0, 200)}: ${describeIssues(checked.error)}`);
  }
  if (Object.keys(usable).length === 0) {
    // Uploads in flight keep the targets stored before (if any); without any, no job is taken.
    logger.error('archive-info names no repository with a usable upload target: keeping the stored upload targets, if any');
    return false;
  }
  const stored: StoredArchiveTargets = { archive_repos: usable, receivedAt: now() };
  await notes.storeTargets(stored);
  logger.info({ repos: Object.keys(usable) }, 'stored the upload targets from archive-info');
  return true;
}

/** True when the stored upload targets name at least one repository (no job is taken before). */
export async function haveUploadTargets(notes: LighthouseNotes): Promise<boolean> {
  const stored = await notes.storedTargets();
  return stored !== null && Object.keys(stored.archive_repos).length > 0;
}
