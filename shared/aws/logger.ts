import { Logger } from '@aws-lambda-powertools/logger';
import type { LifecycleLogger } from '../lease/lifecycle.ts';
import { Redactor } from './redaction.ts';

export const DEFAULT_SERVICE_NAME = 'tasklease';

/**
 * A Powertools Logger whose JSON serialisation runs through the redactor, so no secret value
 * reaches a log line whatever attribute or error message it hides in.
 */
export function createLogger(redactor: Redactor, options: { serviceName?: string } = {}): Logger {
  return new Logger({
    serviceName: options.serviceName ?? process.env.POWERTOOLS_SERVICE_NAME ?? DEFAULT_SERVICE_NAME,
    jsonReplacerFn: redactor.replacer,
  });
}

/** The lifecycle core's logger port on top of Powertools. */
export function lifecycleLogger(logger: Pick<Logger, 'info' | 'warn' | 'error'>): LifecycleLogger {
  return {
    info: (message, attributes) => (attributes ? logger.info(message, attributes) : logger.info(message)),
    warn: (message, attributes) => (attributes ? logger.warn(message, attributes) : logger.warn(message)),
    error: (message, attributes) => (attributes ? logger.error(message, attributes) : logger.error(message)),
  };
}

export { Redactor };
