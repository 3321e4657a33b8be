import { currentMetrics, type HeldDir, type Logger } from '@spark/service';
import { BodyMismatchError, putFile, type PutAnswer, type PutTimeouts } from './put-file.js';
import { NotAsSignedError, openSignedFile, type SignedFile } from './signed-artifacts.js';
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

/** One file to PUT: its name, signed size and SHA-256 in the artifacts dir, and where it goes. */
export interface UploadItem extends SignedFile {
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

/** What was found instead of the signed file, in a reason: `hello.deb: SHA-256 is …, the signed hello.changes says …`. */
function mismatchText(item: UploadItem, error: BodyMismatchError): string {
  const { found } = error;
  if ('sha256' in found) return `${item.name}: SHA-256 is ${found.sha256}, ${item.signedBy} says ${item.sha256}`;
  if ('size' in found) return `${item.name}: is ${found.size} bytes now (it changed while it was sent), ${item.signedBy} says ${item.size}`;
  return `${item.name}: ended after ${found.endedAt} bytes while it was sent, ${item.signedBy} says ${item.size}`;
}

/**
 * PUTs the files in order, once each as far as the archive can tell: a file
 * recorded `done` is skipped; before each PUT the file is recorded `sent`
 * (the archive may store part of it even if no answer comes back). A file
 * counts as uploaded only when its whole body went out and the archive
 * answered 2xx. Stops at the first file that does not go through, throwing
 * {@link UploadProblem}; the caller tries again later, from that file.
 *
 * Every file is read through the held-open `artifacts` dir (openSignedFile:
 * no link, one link, a regular file of the signed size), first all of those
 * still to send — so a file swapped before the try is found before anything
 * goes out — and again for its PUT, which checks its SHA-256 while it streams
 * and holds back the last chunk until it matches (putFile). A file that is
 * not what was signed throws {@link NotAsSignedError} naming it: no later try
 * sends it.
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
  artifacts: HeldDir,
  progress: UploadProgress,
  timeouts: PutTimeouts,
  logger: Logger,
  events: UploadEvents = {},
): Promise<void> {
  const states = await progress.files();
  for (const item of items) {
    if (states.get(item.name) !== 'done') await (await openSignedFile(artifacts, item)).close();
  }
  for (const [index, item] of items.entries()) {
    const state = states.get(item.name);
    if (state === 'done') {
      logger.debug({ file: item.name }, `${item.name} was uploaded before; skipping it`);
      continue;
    }
    await events.sending?.(item, index + 1);
    const handle = await openSignedFile(artifacts, item);
    const sentBefore = state === 'sent';
    let answer: PutAnswer;
    try {
      if (!sentBefore) await progress.markSent(item.name);
      answer = await putFile(item.url, { handle, size: item.size, sha256: item.sha256 }, timeouts);
    } catch (error) {
      if (error instanceof BodyMismatchError) {
        // No byte went out: the archive has nothing of it from this try (as for a 403 below).
        if (!sentBefore && error.bytesSent === 0) await progress.unmarkSent(item.name);
        throw new NotAsSignedError(mismatchText(item, error), { cause: error });
      }
      throw new UploadProblem(`PUT ${item.url} failed: ${(error as Error).message}`, { cause: error });
    } finally {
      await handle.close();
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
