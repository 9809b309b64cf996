/**
 * `Task Ended` queue → revoke and prove. A credential not yet proven rejected within the verify
 * deadline is handed to the re-verify queue by the core; the message itself still succeeds.
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
    const busEvent = parseEventBridgeBody(record.body, DETAIL_TYPES.taskEnded);
    const result = await lifecycle.taskEnded(busEvent.detail);
    return {
      eventId: busEvent.id,
      taskId: result.taskId,
      status: result.status,
      ...('credentials' in result ? { states: result.credentials.map((c) => c.state) } : {}),
    };
  });
};

export const handler = middy(lambdaHandler)
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics, { captureColdStartMetric: true }));
