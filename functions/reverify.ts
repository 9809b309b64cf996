/**
 * Re-verify queue → one more revoke-and-verify of a credential not yet proven rejected (IAM
 * propagation, a target outage). The delay is the message's SQS DelaySeconds, never a sleep.
 * What a due message does (stale ones dropped, the lease closed when its last credential is
 * proven) is the broker's `reverifyDue`.
 */
import { ReverifyMessageSchema } from '../shared/broker/reverify-message.ts';
import { sqsFunction } from './lib/handler.ts';
import { parseJsonDetail } from '../shared/events/parse.ts';

export const { lambdaHandler, handler } = sqsFunction(async (record, broker) =>
  broker.reverifyDue(parseJsonDetail(ReverifyMessageSchema, record.body, 're-verify message')),
);
