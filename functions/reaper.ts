/**
 * Scheduled reaper: lost `Task Ended`, interrupted issuing, stale write-ahead intents, unproven
 * revocations. The broker's run publishes the open trust debt and each workload's blast radius.
 */
import type { Context } from 'aws-lambda';
import type { ReaperReport } from '../shared/lease/reaper.ts';
import { withMiddleware } from './lib/middleware.ts';
import { logger } from './lib/powertools.ts';
import { getRuntime } from './lib/runtime.ts';

// The broker lives as long as the container, so its per-target token buckets and reconciliation
// cadence span invocations (the construct keeps the reaper to one concurrent execution).
export const lambdaHandler = async (_event: unknown, _context: Context): Promise<ReaperReport> => {
  const report = await getRuntime().broker.reap();
  logger.info('reaper run', { ...report });
  return report;
};

export const handler = withMiddleware(lambdaHandler);
