import { z } from 'zod';
import { uuidSchema } from './debian-names.js';

/*
 * Operator requests to running builders (`spark cancel <uuid>`), sent over
 * Redis pub/sub on `builderControlChannel` (redis-keys.ts). Every builder
 * subscribes; the one running the job stops it, the others ignore the message.
 */

/** A control message: cancel one job (its process tree is stopped and the job rejected back to Lighthouse). */
export const builderControlMessageSchema = z.object({
  action: z.literal('cancel'),
  uuid: uuidSchema,
  /** Who asked and why, for the job log. */
  reason: z.string().max(512),
});
/** A control message to builders. */
export type BuilderControlMessage = z.infer<typeof builderControlMessageSchema>;
