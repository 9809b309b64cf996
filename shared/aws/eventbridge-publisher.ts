import { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { EVENT_SOURCE } from '../events/schemas.ts';
import type { OutputEvent } from '../events/schemas.ts';
import { TaskLeaseError } from '../lease/errors.ts';
import type { EventPublisher } from '../lease/ports.ts';

/** PutEvents accepted the call but not the entry; retryable (the caller's message is redelivered). */
export class PublishError extends TaskLeaseError {
  constructor(message: string) {
    super('publish-failed', message);
  }
}

/**
 * Output events (`Lease Issued`, …) onto the tasklease bus with source `tasklease`. The detail
 * types carry no secret material by contract (shared/events/schemas.ts).
 */
export class EventBridgePublisher implements EventPublisher {
  constructor(
    private readonly client: EventBridgeClient,
    private readonly eventBusName: string,
  ) {}

  async publish(event: OutputEvent): Promise<void> {
    const out = await this.client.send(
      new PutEventsCommand({
        Entries: [
          {
            EventBusName: this.eventBusName,
            Source: EVENT_SOURCE,
            DetailType: event.detailType,
            Detail: JSON.stringify(event.detail),
          },
        ],
      }),
    );
    // PutEvents reports per-entry failures in a 200 response.
    if ((out.FailedEntryCount ?? 0) > 0) {
      const entry = out.Entries?.[0];
      throw new PublishError(
        `PutEvents rejected ${event.detailType}: ${entry?.ErrorCode ?? 'unknown'} ${entry?.ErrorMessage ?? ''}`.trim(),
      );
    }
  }
}
