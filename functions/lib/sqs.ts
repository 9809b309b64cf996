import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { PartialItemFailureResponse } from '@aws-lambda-powertools/batch/types';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import type { z } from 'zod';
import { parseJsonDetail } from '../../shared/events/parse.ts';
import { describeError, InvalidEventError } from '../../shared/lease/errors.ts';
import { logger } from './powertools.ts';

// The envelope schema is ours (./envelope.ts): Powertools' keeps every zod locale in the bundle.
export { parseEventBridgeBody } from './envelope.ts';
export type { EventBridgeEvent } from './envelope.ts';

/**
 * When the message reached its queue (SQS `SentTimestamp`, epoch ms), the earliest instant the
 * broker can prove for an event: a `Task Ended` without the engine's own `endedAt` is measured
 * from it (the envelope's `time` has only second precision). Undefined when absent or unreadable.
 */
export function queuedAtOf(record: Pick<SQSRecord, 'attributes'>): number | undefined {
  const raw = (record.attributes as Partial<SQSRecord['attributes']> | undefined)?.SentTimestamp;
  if (typeof raw !== 'string' || !/^\d{1,16}$/.test(raw)) return undefined;
  return Number(raw);
}

/**
 * A JSON body validated by `schema`; InvalidEventError otherwise, never quoting the body. Strict:
 * a duplicate key anywhere (envelope or detail) is refused, since parsers disagree on which copy counts.
 */
export function parseJsonBody<S extends z.ZodType>(body: string, schema: S, what: string): z.infer<S> {
  return parseJsonDetail(schema, body, what);
}

/**
 * Runs `handle` for every record and reports the ones that threw as batch item failures, so
 * SQS retries only those (and dead-letters them after maxReceiveCount); the rest succeed.
 * Every failure is logged with its reason and message id, never with the body.
 */
export async function processSqsBatch(
  event: SQSEvent,
  context: Context,
  handle: (record: SQSRecord) => Promise<Record<string, unknown> | void>,
): Promise<PartialItemFailureResponse> {
  const processor = new BatchProcessor(EventType.SQS);
  const recordHandler = async (record: SQSRecord): Promise<void> => {
    const receiveCount = Number(record.attributes?.ApproximateReceiveCount ?? 1);
    try {
      const outcome = await handle(record);
      logger.info('message processed', { messageId: record.messageId, ...(outcome ?? {}) });
    } catch (err) {
      if (err instanceof InvalidEventError) {
        logger.warn('malformed message rejected; SQS moves it to the dead-letter queue after its last receive', {
          messageId: record.messageId,
          receiveCount,
          reason: err.message,
        });
      } else {
        logger.error('message failed; SQS will redeliver it', { messageId: record.messageId, receiveCount, error: describeError(err) });
      }
      throw err;
    }
  };
  // A batch that failed entirely is still answered item by item (no invocation error).
  return processPartialResponse(event, recordHandler, processor, { context, throwOnFullBatchFailure: false });
}
