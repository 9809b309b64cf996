import type { BrokerMetrics } from '../broker/ports.ts';

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

/**
 * The reaper's gauges kept in memory: the local runtime's metrics port (CloudWatch's role in
 * AWS). Holds the latest value of each gauge, and the blast radius per workload.
 */
export class GaugeRecorder implements BrokerMetrics {
  openDebtGauge?: OpenDebtGauge;
  readonly blastRadiusGauges = new Map<string, BlastRadiusGauge>();

  constructor(private readonly now: () => number = Date.now) {}

  openDebt(count: number, oldestMs: number): void {
    this.openDebtGauge = { count, oldestMs, at: this.now() };
  }

  blastRadius(workload: string, credentials: number, targets: number): void {
    this.blastRadiusGauges.set(workload, { credentials, targets, at: this.now() });
  }
}
