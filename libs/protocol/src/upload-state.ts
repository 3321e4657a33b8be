import { z } from 'zod';

/*
 * What an `upload` job is doing, as the uploader writes it into the BullMQ
 * job's progress and `spark status` / `spark retry-upload` read it back: the
 * uploader retries a failing upload (moving the job to `delayed`) until the
 * round's deadline (`[uploader] GiveUpAfter`), then reports the round failed.
 */

const ms = z.number().int().nonnegative();

/** Progress of an `upload` job. Times in ms since the epoch. */
export const uploadStateSchema = z.discriminatedUnion('phase', [
  z.object({
    phase: z.literal('uploading'),
    /** The file being sent now. */
    file: z.string(),
    /** 1-based position of `file` in the upload order, and how many files there are. */
    fileNumber: z.number().int().positive(),
    files: z.number().int().nonnegative(),
    /** Tries of this round so far, this one included. */
    tries: z.number().int().positive(),
    firstTryAt: ms,
    giveUpAt: ms,
  }),
  z.object({
    phase: z.literal('retrying'),
    /** What failed in the last try, in words an operator can act on. */
    problem: z.string(),
    tries: z.number().int().positive(),
    firstTryAt: ms,
    /** When the next try starts (`spark retry-upload` starts it at once). */
    nextTryAt: ms,
    /** When the round is given up and reported failed if the upload still fails. */
    giveUpAt: ms,
  }),
]);
/** Progress of an `upload` job. */
export type UploadState = z.infer<typeof uploadStateSchema>;

/** What an `upload` job returns when it ends (BullMQ `returnvalue`); `result` is also its metrics label. */
export const uploadOutcomeSchema = z.discriminatedUnion('result', [
  /** Every file is in the archive; the build's own final report went to Lighthouse. */
  z.object({ result: z.literal('uploaded'), report: z.enum(['success', 'failed']) }),
  /** The upload could not be done: the round was reported failed to Lighthouse with this reason at `at`. */
  z.object({ result: z.literal('gave-up'), reason: z.string(), at: ms }),
  /** Lighthouse handed the job out again (round `by`) before this round was uploaded: nothing was reported. */
  z.object({ result: z.literal('superseded'), by: z.string(), at: ms }),
]);
/** How an `upload` job ended. */
export type UploadOutcome = z.infer<typeof uploadOutcomeSchema>;
