import { SendTaskFailureCommand, SendTaskSuccessCommand } from '@aws-sdk/client-sfn';
import type { SFNClient } from '@aws-sdk/client-sfn';
import type { LifecycleLogger } from '../lease/lifecycle.ts';
import type { TaskCallback } from '../lease/ports.ts';
import { awsErrorName, isAwsError } from './errors.ts';

/** Step Functions limits: error ≤ 256 characters, cause ≤ 32,768. */
const MAX_ERROR = 256;
const MAX_CAUSE = 32_768;

/**
 * Answers a Step Functions `.waitForTaskToken` task: success with the lease (secret names and
 * expiry, never secret values), failure with the denial code as `error` and its message as `cause`.
 *
 * A token the state machine has already given up on (timed out, run stopped, token invalid)
 * cannot be answered by retrying, so those errors are logged and swallowed; other errors throw,
 * so the message is redelivered.
 */
export class StepFunctionsTaskCallback implements TaskCallback {
  constructor(
    private readonly client: SFNClient,
    private readonly log?: LifecycleLogger,
  ) {}

  async success(taskToken: string, output: unknown): Promise<void> {
    await this.answer(() => this.client.send(new SendTaskSuccessCommand({ taskToken, output: JSON.stringify(output ?? {}) })), 'success');
  }

  async failure(taskToken: string, error: string, cause: string): Promise<void> {
    await this.answer(
      () => this.client.send(new SendTaskFailureCommand({ taskToken, error: error.slice(0, MAX_ERROR), cause: cause.slice(0, MAX_CAUSE) })),
      'failure',
    );
  }

  private async answer(send: () => Promise<unknown>, kind: 'success' | 'failure'): Promise<void> {
    try {
      await send();
    } catch (err) {
      if (isAwsError(err, 'TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken')) {
        this.log?.warn('Step Functions task token can no longer be answered', { answer: kind, error: awsErrorName(err) });
        return;
      }
      throw err;
    }
  }
}
