/**
 * `Task Started` queue → issue a lease. Thin: parse the EventBridge-in-SQS envelope, call the
 * core (which validates the detail, publishes `Lease Denied` for a malformed one and throws
 * InvalidEventError so the message is dead-lettered), report per-message failures.
 */
import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type { Context, SQSEvent } from 'aws-lambda';
import { DETAIL_TYPES } from '../shared/events/schemas.ts';
import { logger, metrics, tracer } from './lib/powertools.ts';
import { getRuntime } from './lib/runtime.ts';
import { parseEventBridgeBody, processSqsBatch } from './lib/sqs.ts';

export const lambdaHandler = async (event: SQSEvent, context: Context) => {
  const { lifecycle } = getRuntime();
  return processSqsBatch(event, context, async (record) => {
    const busEvent = parseEventBridgeBody(record.body, DETAIL_TYPES.taskStarted);
    const result = await lifecycle.taskStarted(busEvent.detail);
    return { eventId: busEvent.id, taskId: result.taskId, status: result.status, ...(result.status === 'denied' ? { code: result.code } : {}) };
  });
};

export const handler = middy(lambdaHandler)
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics, { captureColdStartMetric: true }));
