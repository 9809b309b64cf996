/**
 * Break-glass operator function (`tasklease revoke`, `tasklease unlock`): invoked directly
 * (lambda:Invoke) by the principals the construct's `operators` prop names, never from the bus.
 * Revokes and proves at once, locks and unlocks workloads; the answer says what happened to each
 * credential. `by` is the operator's principal as the CLI read it (STS GetCallerIdentity): only
 * the granted principals can invoke, and CloudTrail records the real caller of each invoke.
 */
import type { Context } from 'aws-lambda';
import { OperatorRequestError } from '../shared/broker/operator.ts';
import type { OperatorResult } from '../shared/broker/operator.ts';
import { withMiddleware } from './lib/middleware.ts';
import { logger } from './lib/powertools.ts';
import { getRuntime } from './lib/runtime.ts';

export type OperatorResponse = { ok: true; result: OperatorResult } | { ok: false; error: string };

export const lambdaHandler = async (event: unknown, _context: Context): Promise<OperatorResponse> => {
  try {
    const result = await getRuntime().broker.operator(event);
    logger.info('operator request done', { action: result.action, revoked: 'revoked' in result ? result.revoked.length : 0 });
    return { ok: true, result };
  } catch (err) {
    // A malformed request is the caller's to fix: answered, not thrown (nothing to retry).
    if (err instanceof OperatorRequestError) return { ok: false, error: err.message };
    throw err;
  }
};

export const handler = withMiddleware(lambdaHandler);
