/**
 * `Task Started` queue → issue a lease. Parse the EventBridge-in-SQS envelope, hand the detail to
 * the broker (which validates it, publishes `Lease Denied` for a malformed one and throws
 * InvalidEventError so the message is dead-lettered), report per-message failures.
 */
import { DETAIL_TYPES } from '../shared/events/schemas.ts';
import { sqsFunction } from './lib/handler.ts';
import { parseEventBridgeBody } from './lib/envelope.ts';

export const { lambdaHandler, handler } = sqsFunction(async (record, broker) => {
  const busEvent = parseEventBridgeBody(record.body, DETAIL_TYPES.taskStarted);
  const result = await broker.taskStarted(busEvent.detail);
  return {
    eventId: busEvent.id,
    taskId: result.taskId,
    status: result.status,
    ...(result.status === 'denied' ? { code: result.code } : {}),
  };
});
