/**
 * Scheduled reaper: lost `Task Ended`, interrupted issuing, stale write-ahead intents, unproven
 * revocations. The broker's run publishes the open trust debt and each workload's blast radius.
 */
import type { Context } from 'aws-lambda';
import type { ReaperReport } from '../shared/lease/reaper.ts';
import { withMiddleware } from './lib/middleware.ts';
import { logger } from './lib/powertools.ts';
import { getRuntime } from './lib/runtime.ts';

/** The ledger lock a reaper run holds (shared/ledger/lock.ts). */
export const REAPER_LOCK = 'reaper';

/** What a run that found another one in progress returns. */
export interface ReaperSkipped {
  skipped: 'another-run-in-progress';
}

// The broker lives as long as the container, so its per-target token buckets and reconciliation
// cadence span invocations. One run at a time across containers, without reserved concurrency
// (which fails the deploy in accounts with a low concurrency quota): a run takes the ledger's
// lock for at most its remaining time, and a run that finds it held ends at once; the next
// scheduled run covers whatever it would have done.
export const lambdaHandler = async (_event: unknown, context: Context): Promise<ReaperReport | ReaperSkipped> => {
  const runtime = getRuntime();
  const ttlMs = Math.max(1_000, context.getRemainingTimeInMillis());
  let ran = false;
  try {
    return await runtime.singleFlight(REAPER_LOCK, ttlMs, async () => {
      ran = true;
      const report = await runtime.broker.reap();
      logger.info('reaper run', { ...report });
      return report;
    });
  } catch (err) {
    if (ran) throw err;
    logger.info('reaper run skipped: another run holds the lock', { lock: REAPER_LOCK });
    return { skipped: 'another-run-in-progress' };
  }
};

export const handler = withMiddleware(lambdaHandler);
