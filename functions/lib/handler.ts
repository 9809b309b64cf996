import type { PartialItemFailureResponse } from '@aws-lambda-powertools/batch/types';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import type { Broker } from '../../shared/broker/create.ts';
import { withMiddleware } from './middleware.ts';
import { getRuntime } from './runtime.ts';
import { processSqsBatch } from './sqs.ts';

export { withMiddleware };

/** What one SQS record did, for its `message processed` log line (never a secret). */
export type RecordOutcome = Record<string, unknown>;

/**
 * An SQS-fed function: each record is parsed and handed to the container's broker, and the records
 * that threw are reported as batch item failures. Returns the bare handler (tests, benches) and
 * the one wrapped in the middleware stack (the Lambda entry point).
 */
export function sqsFunction(handle: (record: SQSRecord, broker: Broker) => Promise<RecordOutcome>) {
  const lambdaHandler = async (event: SQSEvent, context: Context): Promise<PartialItemFailureResponse> => {
    const { broker } = getRuntime();
    return processSqsBatch(event, context, (record) => handle(record, broker));
  };
  return { lambdaHandler, handler: withMiddleware(lambdaHandler) };
}
