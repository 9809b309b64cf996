import * as z from 'zod';
import { GrantSchema, TaskIdSchema } from '../events/schemas.ts';

/**
 * One re-verification due: which credential, and not before when. The SQS queue carries it as a
 * message body; the local delay queue passes it in memory.
 */
export const ReverifyMessageSchema = z.strictObject({
  taskId: TaskIdSchema,
  grant: GrantSchema,
  /** Epoch ms; a message delivered earlier is handed back with the remaining delay (SQS delays stop at 15 minutes). */
  notBefore: z.number().int().nonnegative().optional(),
});
export type ReverifyMessage = z.infer<typeof ReverifyMessageSchema>;
