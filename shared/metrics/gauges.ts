import type { BrokerMetrics } from '../broker/ports.ts';
import type { LifecycleObserver } from '../lease/lifecycle.ts';
import type { CredentialRecord } from '../lease/records.ts';
import { DEBT_SPLIT_FIELDS, debtSplit, percentile } from '../lease/trust-debt.ts';
import type { DebtSplitField } from '../lease/trust-debt.ts';
import { DEBT_SPLIT_METRIC, METRIC } from './names.ts';

export interface OpenDebtGauge {
  count: number;
  oldestMs: number;
  at: number;
}

export interface BlastRadiusGauge {
  credentials: number;
  targets: number;
  at: number;
}

/** Samples kept per metric: enough for a p99 of recent credentials, bounded for a long-running runtime. */
const MAX_SAMPLES = 10_000;

/**
 * The broker's metrics kept in memory: the local runtime's metrics port and observer (CloudWatch's
 * role in AWS). Holds the latest value of each reaper gauge, the blast radius per workload, and
 * the recent samples of each proven credential's trust debt and its split, by CloudWatch metric name.
 */
export class GaugeRecorder implements BrokerMetrics, Pick<LifecycleObserver, 'verified'> {
  openDebtGauge?: OpenDebtGauge;
  readonly blastRadiusGauges = new Map<string, BlastRadiusGauge>();
  /** Recent values (ms) per metric name: TrustDebtMs, PipelineDelayMs, RevokeMs, ProofMs, ExposureMs. */
  readonly samples = new Map<string, number[]>();

  constructor(private readonly now: () => number = Date.now) {}

  openDebt(count: number, oldestMs: number): void {
    this.openDebtGauge = { count, oldestMs, at: this.now() };
  }

  blastRadius(workload: string, credentials: number, targets: number): void {
    this.blastRadiusGauges.set(workload, { credentials, targets, at: this.now() });
  }

  /** A credential proven rejected: its trust debt and split, as the AWS adapter publishes them. */
  verified(credential: CredentialRecord): void {
    const split = debtSplit(credential);
    this.add(METRIC.trustDebt, split.trustDebtMs);
    for (const field of DEBT_SPLIT_FIELDS) this.add(DEBT_SPLIT_METRIC[field], split[field]);
  }

  /** p50/p99 of the recent samples of one split field (or of the trust debt itself). */
  splitPercentiles(field: DebtSplitField | 'trustDebtMs'): { count: number; p50?: number; p99?: number } {
    const values = this.samples.get(field === 'trustDebtMs' ? METRIC.trustDebt : DEBT_SPLIT_METRIC[field]) ?? [];
    return { count: values.length, p50: percentile(values, 50), p99: percentile(values, 99) };
  }

  private add(name: string, value: number | undefined): void {
    if (value === undefined || !Number.isFinite(value)) return;
    let values = this.samples.get(name);
    if (!values) this.samples.set(name, (values = []));
    values.push(value);
    if (values.length > MAX_SAMPLES) values.splice(0, values.length - MAX_SAMPLES);
  }
}
