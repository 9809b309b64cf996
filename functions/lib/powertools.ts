import { Metrics } from '@aws-lambda-powertools/metrics';
import { createLogger, DEFAULT_SERVICE_NAME } from '../../shared/aws/logger.ts';
import { Redactor } from '../../shared/aws/redaction.ts';
import { METRICS_NAMESPACE } from '../../shared/metrics/names.ts';
import { NO_TRACING } from './tracing.ts';
import type { Tracing } from './tracing.ts';

/*
 * One Logger, Metrics and Tracer per container, as Powertools intends. The redactor is shared by
 * the logger and the secret store, so every secret the container handles is scrubbed from logs.
 */
const serviceName = process.env.POWERTOOLS_SERVICE_NAME ?? DEFAULT_SERVICE_NAME;

export const redactor = new Redactor();
export const logger = createLogger(redactor, { serviceName });
export const metrics = new Metrics({ namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? METRICS_NAMESPACE, serviceName });
// A literal `process.env.TASKLEASE_XRAY` (tracing.ts XRAY_SWITCH): esbuild's define replaces exactly this expression.
export const tracing: Tracing = process.env.TASKLEASE_XRAY === 'off' ? NO_TRACING : (await import('./xray.ts')).xrayTracing(serviceName);
