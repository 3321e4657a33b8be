import { z } from 'zod';

/*
 * What a `sign` job waits for, as the signer writes it into the BullMQ job's
 * progress and `spark status` reads it back: a job whose signed files find the
 * workspace disk full is tried again with backoff (the job `delayed`) until
 * `giveUpAt`, then reported failed.
 */

const ms = z.number().int().nonnegative();

/** Progress of a `sign` job that waits for disk space. Times in ms since the epoch. */
export const signStateSchema = z.object({
  phase: z.literal('disk-full'),
  /** What the last try could not write, in words an operator can act on. */
  problem: z.string(),
  /** Tries that found the disk full, the last one included. */
  tries: z.number().int().positive(),
  /** The first try that found the disk full. */
  since: ms,
  nextTryAt: ms,
  /** When the round is reported failed if the disk is still full. */
  giveUpAt: ms,
});
/** Progress of a `sign` job. */
export type SignState = z.infer<typeof signStateSchema>;
