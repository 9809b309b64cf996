import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type { Tracing } from './tracing.ts';

/** Powertools Tracer: an X-Ray segment per invocation and a subsegment per AWS SDK call. */
export function xrayTracing(serviceName: string): Tracing {
  const tracer = new Tracer({ serviceName });
  return {
    enabled: true,
    captureClient: (client) => tracer.captureAWSv3Client(client),
    middleware: () => captureLambdaHandler(tracer, { captureResponse: false }),
  };
}
