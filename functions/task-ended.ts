/**
 * `Task Ended` queue → revoke and prove. A credential not yet proven rejected within the verify
 * deadline is handed to the re-verify queue by the core; the message itself still succeeds.
 */
import { DETAIL_TYPES } from '../shared/events/schemas.ts';
import { sqsFunction } from './lib/handler.ts';
import { parseEventBridgeBody } from './lib/envelope.ts';
import { queuedAtOf } from './lib/sqs.ts';

export const { lambdaHandler, handler } = sqsFunction(async (record, broker) => {
  const busEvent = parseEventBridgeBody(record.body, DETAIL_TYPES.taskEnded);
  // Without the engine's own endedAt, the end is when the message reached the queue.
  const result = await broker.taskEnded(busEvent.detail, { queuedAt: queuedAtOf(record) });
  return {
    eventId: busEvent.id,
    taskId: result.taskId,
    status: result.status,
    ...('credentials' in result ? { states: result.credentials.map((c) => c.state) } : {}),
  };
});
