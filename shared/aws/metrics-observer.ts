import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { DenialCode } from '../events/schemas.ts';
import type { BrokerMetrics } from '../broker/ports.ts';
import type { LifecycleObserver } from '../lease/lifecycle.ts';
import type { CredentialRecord, LeaseRecord } from '../lease/records.ts';
import { DEBT_SPLIT_FIELDS, debtSplit } from '../lease/trust-debt.ts';
import { DEBT_SPLIT_METRIC, DIMENSION, METRIC, METRICS_NAMESPACE } from '../metrics/names.ts';
import { DEFAULT_SERVICE_NAME } from './logger.ts';

type Unit = (typeof MetricUnit)[keyof typeof MetricUnit];
type Point = readonly [name: string, unit: Unit, value: number | undefined];

/** What the observer needs from Powertools: one metrics instance per dimension set. */
export interface MetricsSink {
  /** Publishes `points` (EMF) under `dimensions` plus the default `service` dimension. */
  emit(dimensions: Record<string, string>, points: readonly Point[]): void;
}

/**
 * EMF through Powertools. The handler's own `Metrics` instance (flushed by `logMetrics`) holds
 * one dimension set per flush, so points with other dimensions go out through a short-lived
 * instance flushed at once. Every point also carries Powertools' `service` dimension; the
 * dashboards and alarms match on namespace + metric name (infra/monitoring.ts).
 */
export class PowertoolsMetricsSink implements MetricsSink {
  /**
   * @param main the handler's instance: points without extra dimensions are added to it and go
   *   out with its flush (`logMetrics` middleware); without it every point is flushed at once.
   */
  constructor(
    private readonly main?: Metrics,
    private readonly options: { namespace?: string; serviceName?: string } = {},
  ) {}

  emit(dimensions: Record<string, string>, points: readonly Point[]): void {
    const present = points.filter((p): p is readonly [string, Unit, number] => typeof p[2] === 'number' && Number.isFinite(p[2]));
    if (!present.length) return;
    if (this.main && Object.keys(dimensions).length === 0) {
      for (const [name, unit, value] of present) this.main.addMetric(name, unit, value);
      return;
    }
    const m = new Metrics({
      namespace: this.options.namespace ?? METRICS_NAMESPACE,
      serviceName: this.options.serviceName ?? process.env.POWERTOOLS_SERVICE_NAME ?? DEFAULT_SERVICE_NAME,
    });
    for (const [k, v] of Object.entries(dimensions)) m.addDimension(k, v);
    for (const [name, unit, value] of present) m.addMetric(name, unit, value);
    m.publishStoredMetrics();
  }
}

const byTarget = (c: Pick<CredentialRecord, 'kind' | 'target'>) => ({ [DIMENSION.targetKind]: c.kind, [DIMENSION.target]: c.target });

/**
 * The lifecycle's metrics and the reaper's gauges (shared/metrics/names.ts): the broker's observer
 * and metrics ports in AWS. Must never throw: a metrics failure is not a reason to fail a lease
 * operation.
 */
export class MetricsObserver implements LifecycleObserver, BrokerMetrics {
  constructor(
    private readonly sink: MetricsSink,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.onError(err);
    }
  }

  issued(_lease: LeaseRecord, credentials: CredentialRecord[], latencyMs: number): void {
    this.safely(() => {
      this.sink.emit({}, [[METRIC.issuanceLatency, MetricUnit.Milliseconds, latencyMs]]);
      // Per target too, so a slow target stands out.
      const seen = new Set<string>();
      for (const c of credentials) {
        if (seen.has(c.target)) continue;
        seen.add(c.target);
        this.sink.emit(byTarget(c), [[METRIC.issuanceLatency, MetricUnit.Milliseconds, latencyMs]]);
      }
    });
  }

  denied(code: DenialCode): void {
    this.safely(() => this.sink.emit({ [DIMENSION.reason]: code }, [[METRIC.denials, MetricUnit.Count, 1]]));
  }

  verified(c: CredentialRecord): void {
    // Where the debt went: pipeline, revoke, proof, and the exposure window (the dashboard's graphs).
    const split = debtSplit(c);
    this.safely(() =>
      this.sink.emit(byTarget(c), [
        [METRIC.trustDebt, MetricUnit.Milliseconds, c.trustDebtMs],
        [METRIC.avoidedDebt, MetricUnit.Milliseconds, c.avoidedDebtMs],
        [METRIC.verifyAttempts, MetricUnit.Count, c.verifyAttempts],
        ...DEBT_SPLIT_FIELDS.map((f): Point => [DEBT_SPLIT_METRIC[f], MetricUnit.Milliseconds, split[f]]),
      ]),
    );
  }

  stillValid(c: CredentialRecord): void {
    this.safely(() => this.sink.emit(byTarget(c), [[METRIC.stillValid, MetricUnit.Count, 1]]));
  }

  revocationFailed(c: CredentialRecord): void {
    this.safely(() => this.sink.emit(byTarget(c), [[METRIC.revocationFailures, MetricUnit.Count, 1]]));
  }

  /** Peak live credentials and distinct targets of one workload over the last window (the reaper's). */
  blastRadius(workload: string, credentials: number, targets: number): void {
    this.safely(() =>
      this.sink.emit({ [DIMENSION.workload]: workload }, [
        [METRIC.blastRadiusCredentials, MetricUnit.Count, credentials],
        [METRIC.blastRadiusTargets, MetricUnit.Count, targets],
      ]),
    );
  }

  /** The reaper's open-debt gauges. */
  openDebt(count: number, oldestMs: number): void {
    this.safely(() =>
      this.sink.emit({}, [
        [METRIC.openDebtCount, MetricUnit.Count, count],
        [METRIC.openDebtOldest, MetricUnit.Milliseconds, oldestMs],
      ]),
    );
  }
}
