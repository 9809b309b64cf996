/**
 * Scheduled reaper: lost `Task Ended`, interrupted issuing, stale write-ahead intents, unproven
 * revocations. Publishes the open trust debt (count and oldest age) every run.
 */
import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type { Context } from 'aws-lambda';
import { createReaperState, runReaper } from '../shared/lease/reaper.ts';
import { blastRadius } from '../shared/metrics/blast-radius.ts';
import type { ReaperReport } from '../shared/lease/reaper.ts';
import { logger, metrics, tracer } from './lib/powertools.ts';
import { getRuntime } from './lib/runtime.ts';

// Per container: the per-target token bucket and the reconciliation cadence span invocations
// (the construct keeps the reaper to one concurrent execution, so this is the only bucket).
const state = createReaperState();

export const lambdaHandler = async (_event: unknown, _context: Context): Promise<ReaperReport> => {
  const rt = getRuntime();
  const report = await runReaper(rt.lifecycle, { ledger: rt.ledger, clock: rt.clock, log: rt.log, targets: rt.targets, state }, { verifyDeadlineMs: rt.verifyDeadlineMs });
  rt.observer.openDebt(report.openDebt.count, report.openDebt.oldestMs);
  // Blast radius: how far each workload's identity reached since the previous run. Credentials
  // live in that window were requested within the longest lease before it.
  const now = rt.clock.now();
  const windowMs = rt.config.settings.reaperIntervalSeconds * 1000;
  const maxLeaseMs = Math.max(0, ...rt.config.rules.map((r) => r.maxLeaseSeconds)) * 1000;
  const recent = await rt.ledger.listLeases({ since: now - windowMs - maxLeaseMs, until: now });
  for (const w of blastRadius(recent.flatMap((l) => l.credentials), { now, since: now - windowMs, until: now })) {
    rt.observer.blastRadius(w.workload, w.peakCredentials, w.peakTargets);
  }
  logger.info('reaper run', { ...report });
  return report;
};

export const handler = middy(lambdaHandler)
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics, { captureColdStartMetric: true }));
