import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { Grant } from '../events/schemas.ts';
import type { ReverifyScheduler } from '../lease/lifecycle.ts';
import type { ReverifyMessage } from '../broker/reverify-message.ts';

// The message shape is the broker's (the local delay queue carries the same one).
export { ReverifyMessageSchema } from '../broker/reverify-message.ts';
export type { ReverifyMessage } from '../broker/reverify-message.ts';

/** SQS's longest per-message delay. */
export const MAX_SQS_DELAY_SECONDS = 900;

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
