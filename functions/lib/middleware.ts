import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type { Context } from 'aws-lambda';
import { logger, metrics, tracer } from './powertools.ts';

/**
 * The one middleware stack of every function: X-Ray segment, Lambda context in logs, EMF flush.
 * Its own module so the reaper's bundle does not carry the SQS batch and envelope parsing.
 */
export function withMiddleware<E, R>(fn: (event: E, context: Context) => Promise<R>) {
  return middy(fn)
    .use(captureLambdaHandler(tracer, { captureResponse: false }))
    .use(injectLambdaContext(logger))
    .use(logMetrics(metrics, { captureColdStartMetric: true }));
}
