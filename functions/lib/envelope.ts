import * as z from 'zod';
import { parseJsonDetail } from '../../shared/events/parse.ts';
import { InvalidEventError } from '../../shared/lease/errors.ts';

/*
 * The EventBridge event an SQS target delivers as the message body. Our own small schema, not
 * @aws-lambda-powertools/parser's: that one's `import { z } from 'zod'` keeps all of zod's locales
 * (~350 kB) in every bundle, where `import * as z` lets esbuild drop them.
 */
export const EventBridgeEnvelopeSchema = z.object({
  version: z.string(),
  id: z.string(),
  source: z.string(),
  account: z.string(),
  time: z.iso.datetime(),
  region: z.string(),
  resources: z.array(z.string()),
  'detail-type': z.string(),
  detail: z.unknown(),
  'replay-name': z.string().optional(),
});

export type EventBridgeEvent = z.infer<typeof EventBridgeEnvelopeSchema>;

/**
 * The EventBridge event inside an SQS message body. Throws InvalidEventError with a reason that
 * never repeats the body: JSON.parse's own message quotes it, and it may hold an SVID. Strict: a
 * duplicate key anywhere (envelope or detail) is refused, since parsers disagree on which copy counts.
 */
export function parseEventBridgeBody(body: string, expectedDetailType: string): EventBridgeEvent {
  const event = parseJsonDetail(EventBridgeEnvelopeSchema, body, 'message body is not an EventBridge event');
  if (event['detail-type'] !== expectedDetailType) {
    throw new InvalidEventError(`detail-type '${event['detail-type'].slice(0, 64)}' reached the '${expectedDetailType}' queue`);
  }
  return event;
}
