import { setTimeout as sleep } from 'node:timers/promises';
import { currentMetrics, type Logger } from '@spark/service';
import { putFile, type PutAnswer } from './put-file.js';
import type { UploadProgress } from './upload-progress.js';

/** The archive refused a file (4xx): retrying cannot help; the message carries the archive's words. */
export class UploadRefusedError extends Error {
  override name = 'UploadRefusedError';
}

/** One file to PUT. */
export interface UploadItem {
  name: string;
  path: string;
  size: number;
  url: string;
}

/** How {@link uploadFiles} sends and retries. */
export interface UploadPolicy {
  /** ms allowed for one PUT (`[uploader] FileTimeout`). */
  fileTimeoutMs: number;
  /** PUTs tried per file before giving up (`[uploader] Attempts`). */
  attempts: number;
  /** ms to wait before retry number `retry` (1-based). */
  retryDelayMs: (retry: number) => number;
}

/** Exponential backoff: 1 s, 2 s, 4 s … capped at 60 s (`baseMs` scales it). */
export function exponentialBackoff(baseMs = 1_000, maxMs = 60_000): (retry: number) => number {
  return (retry) => Math.min(baseMs * 2 ** (retry - 1), maxMs);
}

function transient(answer: PutAnswer): boolean {
  return answer.status >= 500 || answer.status === 408 || answer.status === 429;
}

/**
 * PUTs the files in order, each exactly once as far as the archive can tell:
 * a file recorded `done` is skipped; before each PUT the file is recorded
 * `sent`, so a `403` (file exists) for a file this job sent before — in this
 * run or before a crash — counts as done. Network errors, timeouts and 5xx are
 * retried with backoff; any other 4xx, or a 403 for a file we never sent,
 * throws {@link UploadRefusedError} with the archive's answer. Throws a plain
 * Error once a file's attempts are spent.
 */
export async function uploadFiles(
  items: readonly UploadItem[],
  progress: UploadProgress,
  policy: UploadPolicy,
  logger: Logger,
): Promise<void> {
  const states = await progress.files();
  for (const item of items) {
    const state = states.get(item.name);
    if (state === 'done') {
      logger.info({ file: item.name }, `${item.name} was uploaded before; skipping it`);
      continue;
    }
    let sentBefore = state === 'sent';
    let lastProblem = '';
    let uploaded = false;
    for (let attempt = 1; attempt <= policy.attempts && !uploaded; attempt++) {
      if (attempt > 1) await sleep(policy.retryDelayMs(attempt - 1));
      if (!sentBefore) await progress.markSent(item.name);
      let answer: PutAnswer;
      try {
        answer = await putFile(item.url, item.path, item.size, policy.fileTimeoutMs);
      } catch (error) {
        lastProblem = (error as Error).message;
        sentBefore = true;
        logger.warn({ file: item.name, url: item.url, attempt, err: error }, `PUT ${item.url} failed: ${lastProblem}; will retry`);
        continue;
      }
      if (answer.status >= 200 && answer.status < 300) {
        uploaded = true;
      } else if (answer.status === 403 && sentBefore) {
        logger.info(
          { file: item.name },
          `${item.name} is already in the archive from an earlier attempt of this job; counting it as uploaded`,
        );
        uploaded = true;
      } else if (transient(answer)) {
        lastProblem = `${answer.status} ${answer.message}`;
        logger.warn(
          { file: item.name, url: item.url, attempt, status: answer.status },
          `PUT ${item.url} answered ${lastProblem}; will retry`,
        );
      } else {
        throw new UploadRefusedError(`the archive refused ${item.name} (PUT ${item.url}): ${answer.status} ${answer.message}`);
      }
      sentBefore = true;
    }
    if (!uploaded) {
      throw new Error(`gave up uploading ${item.name} to ${item.url} after ${policy.attempts} attempts; last: ${lastProblem}`);
    }
    await progress.markDone(item.name);
    currentMetrics()?.uploadBytes.inc(item.size);
    logger.info({ file: item.name, url: item.url, bytes: item.size }, `uploaded ${item.name}`);
  }
}
