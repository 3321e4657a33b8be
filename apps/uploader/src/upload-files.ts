import { currentMetrics, type Logger } from '@spark/service';
import { putFile, type PutAnswer, type PutTimeouts } from './put-file.js';
import type { UploadProgress } from './upload-progress.js';

/**
 * One try of an upload failed; the message says what failed in words an
 * operator can act on (it goes to the log, to Lighthouse as a status excerpt
 * and, at the deadline, as the reason the job failed). The upload is tried
 * again later.
 */
export class UploadProblem extends Error {
  override name = 'UploadProblem';
}

/** One file to PUT. */
export interface UploadItem {
  name: string;
  path: string;
  size: number;
  url: string;
  /** Where lkwebupload stores it on the archive: `incoming/<repo>/<name>`. */
  archivePath: string;
}

/** What {@link uploadFiles} tells its caller as it goes. */
export interface UploadEvents {
  /** Before each file is sent, with its 1-based position. */
  sending?: (item: UploadItem, fileNumber: number) => Promise<void>;
  /** After a file is in the archive. */
  uploaded?: (item: UploadItem) => void;
}

/** `422 unknown repository: extra`, or the status alone when the archive said nothing. */
function answerText(answer: PutAnswer): string {
  return answer.message ? `${answer.status} ${answer.message}` : String(answer.status);
}

/**
 * PUTs the files in order, once each as far as the archive can tell: a file
 * recorded `done` is skipped; before each PUT the file is recorded `sent`
 * (the archive may store part of it even if no answer comes back). A file
 * counts as uploaded only when its whole body went out and the archive
 * answered 2xx. Stops at the first file that does not go through, throwing
 * {@link UploadProblem}; the caller tries again later, from that file.
 *
 * A 403 ("already exists") is never counted as uploaded: lkwebupload writes
 * each PUT straight into `incoming/<repo>/<name>`, so for a file this round
 * sent before (a try cut off, a crash) the archive may hold a truncated copy,
 * and for one it never sent the copy is another round's (a rebuild is not
 * byte-identical), which would not match this round's `.changes`/`.dud`.
 * Either way the problem names the file and where it lies on the archive.
 */
export async function uploadFiles(
  items: readonly UploadItem[],
  progress: UploadProgress,
  timeouts: PutTimeouts,
  logger: Logger,
  events: UploadEvents = {},
): Promise<void> {
  const states = await progress.files();
  for (const [index, item] of items.entries()) {
    const state = states.get(item.name);
    if (state === 'done') {
      logger.debug({ file: item.name }, `${item.name} was uploaded before; skipping it`);
      continue;
    }
    await events.sending?.(item, index + 1);
    const sentBefore = state === 'sent';
    if (!sentBefore) await progress.markSent(item.name);
    let answer: PutAnswer;
    try {
      answer = await putFile(item.url, item.path, item.size, timeouts);
    } catch (error) {
      throw new UploadProblem(`PUT ${item.url} failed: ${(error as Error).message}`, { cause: error });
    }
    if (answer.status >= 200 && answer.status < 300) {
      if (!answer.bodySent) {
        throw new UploadProblem(
          `the archive answered ${answerText(answer)} to PUT ${item.url} before the whole of ${item.name} was sent; not counting it as uploaded`,
        );
      }
    } else if (answer.status === 403 && sentBefore) {
      throw new UploadProblem(
        `the archive holds a possibly partial ${item.name}: an earlier try of this job was cut off while sending it, and the archive now refuses it (${answerText(answer)}). ` +
          `Remove ${item.archivePath} on the archive; the next try then sends it again`,
      );
    } else if (answer.status === 403) {
      // Refused before anything was stored: this round has still not written to the archive's copy.
      await progress.unmarkSent(item.name);
      throw new UploadProblem(
        `the archive already holds ${item.name} (${item.archivePath}), which this round of the job never sent: an earlier round or another upload left it there (${answerText(answer)}). ` +
          `It is not counted as this round's; the next try succeeds once the archive has imported it or ${item.archivePath} is removed on the archive`,
      );
    } else {
      throw new UploadProblem(`the archive answered PUT ${item.url} with ${answerText(answer)}`);
    }
    await progress.markDone(item.name);
    currentMetrics()?.uploadBytes.inc(item.size);
    logger.info({ file: item.name, url: item.url, bytes: item.size }, `uploaded ${item.name}`);
    events.uploaded?.(item);
  }
}
