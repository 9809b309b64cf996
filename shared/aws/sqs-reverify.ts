import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSClient } from '@aws-sdk/client-sqs';
import * as z from 'zod';
import { GrantSchema, TaskIdSchema } from '../events/schemas.ts';
import type { Grant } from '../events/schemas.ts';
import type { ReverifyScheduler } from '../lease/lifecycle.ts';

/** SQS's longest per-message delay. */
export const MAX_SQS_DELAY_SECONDS = 900;

/** The re-verify queue's message: which credential, and not before when (delays beyond 15 minutes hop). */
export const ReverifyMessageSchema = z.strictObject({
  taskId: TaskIdSchema,
  grant: GrantSchema,
  /** Epoch ms; a message delivered earlier is sent back with the remaining delay. */
  notBefore: z.number().int().nonnegative().optional(),
});
export type ReverifyMessage = z.infer<typeof ReverifyMessageSchema>;

/**
 * Hands an unproven revocation to a later invocation through an SQS delay, so no Lambda ever
 * sleeps while IAM (or anything else) propagates.
 */
export class SqsReverifyScheduler implements ReverifyScheduler {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
    private readonly now: () => number = Date.now,
  ) {}

  async schedule(taskId: string, grant: Grant, delayMs: number): Promise<void> {
    const wanted = Math.max(0, Math.ceil(delayMs / 1000));
    const message: ReverifyMessage = { taskId, grant, ...(wanted > MAX_SQS_DELAY_SECONDS ? { notBefore: this.now() + delayMs } : {}) };
    await this.client.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(message),
        DelaySeconds: Math.min(wanted, MAX_SQS_DELAY_SECONDS),
      }),
    );
  }
}
