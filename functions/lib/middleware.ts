import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { Context } from 'aws-lambda';
import { logger, metrics, tracing } from './powertools.ts';

/**
 * The one middleware stack of every function: X-Ray segment (when tracing is on), Lambda context
 * in logs, EMF flush. Its own module so the reaper's bundle does not carry the SQS batch and
 * envelope parsing.
 */
export function withMiddleware<E, R>(fn: (event: E, context: Context) => Promise<R>) {
  const handler = middy(fn);
  if (tracing.middleware) handler.use(tracing.middleware());
  return handler.use(injectLambdaContext(logger)).use(logMetrics(metrics, { captureColdStartMetric: true }));
}
