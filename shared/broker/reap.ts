import type { LeaseLifecycle, LifecycleLogger } from '../lease/lifecycle.ts';
import type { Clock, Ledger } from '../lease/ports.ts';
import { runReaper } from '../lease/reaper.ts';
import type { ReaperOptions, ReaperReport, ReaperState } from '../lease/reaper.ts';
import { describeError } from '../lease/errors.ts';
import { blastRadius } from '../metrics/blast-radius.ts';
import type { BrokerMetrics, BrokerTargets } from './ports.ts';

export interface ReapDeps {
  lifecycle: LeaseLifecycle;
  ledger: Ledger;
  clock: Clock;
  targets: BrokerTargets;
  state: ReaperState;
  metrics?: BrokerMetrics;
  log?: LifecycleLogger;
}

export interface ReapWindow {
  /** The reaper's schedule: blast radius is measured over the time since the previous run. */
  intervalMs: number;
  /** The longest lease any rule allows: credentials live in the window were requested within it. */
  maxLeaseMs: number;
}

/**
 * One reaper run, then its gauges: open debt (count, oldest age) and each workload's blast radius
 * since the previous run. The gauges are measured after the run; failing to measure the blast
 * radius is logged, never a failed run.
 */
export async function reapAndMeasure(deps: ReapDeps, window: ReapWindow, options: Partial<ReaperOptions>): Promise<ReaperReport> {
  const { ledger, clock, log, metrics } = deps;
  const report = await runReaper(deps.lifecycle, { ledger, clock, log, targets: deps.targets, state: deps.state }, options);
  if (!metrics) return report;
  metrics.openDebt(report.openDebt.count, report.openDebt.oldestMs);
  try {
    const now = clock.now();
    const recent = await ledger.listLeases({ since: now - window.intervalMs - window.maxLeaseMs, until: now });
    for (const w of blastRadius(
      recent.flatMap((l) => l.credentials),
      { now, since: now - window.intervalMs, until: now },
    )) {
      metrics.blastRadius(w.workload, w.peakCredentials, w.peakTargets);
    }
  } catch (err) {
    log?.warn('reaper: blast radius not measured this run', { error: describeError(err) });
  }
  return report;
}
