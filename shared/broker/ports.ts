import type { LifecycleDeps, LifecycleOptions } from '../lease/lifecycle.ts';
import type { TargetRegistry } from '../lease/ports.ts';
import type { ReaperOptions } from '../lease/reaper.ts';
import type { RuntimeSettings } from '../policy/config.ts';

/**
 * The gauges the reaper publishes after every run (CloudWatch in AWS, an in-memory recorder
 * locally). Must never throw: a metric is not a reason to fail a reaper run.
 */
export interface BrokerMetrics {
  /** Credentials no longer needed and not yet proven rejected: how many, and the oldest's age. */
  openDebt(count: number, oldestMs: number): void;
  /** Peak live credentials and distinct targets of one workload over the last reaper interval. */
  blastRadius(workload: string, credentials: number, targets: number): void;
}

/** A target registry that may also list and close its drivers (the reaper reconciles by name). */
export type BrokerTargets = TargetRegistry & { names?(): string[]; close?(): Promise<void> };

/**
 * Everything the broker talks to. Each runtime supplies its adapters; the broker wires them
 * (docs/architecture.md, "Ports" and "The two runtimes").
 */
export interface BrokerPorts extends Omit<LifecycleDeps, 'targets' | 'options'> {
  targets: BrokerTargets;
  metrics?: BrokerMetrics;
}

export interface BrokerOptions {
  /** The config's runtime settings (verify budget, reaper interval) and rules (their longest lease); a TaskLeaseConfig fits. */
  config: { settings: RuntimeSettings; rules: ReadonlyArray<{ maxLeaseSeconds: number }>; clockSkewSeconds?: number };
  /**
   * Verification budget of one call, for event handlers and the reaper alike. Default:
   * `settings.verifyDeadlineSeconds`.
   */
  verifyDeadlineMs?: number;
  /** Overrides of the core's options (tests, chaos); win over `verifyDeadlineMs`. */
  lifecycle?: Partial<LifecycleOptions>;
  /** Defaults of every reaper run; a run's own options win over these. */
  reaper?: Partial<ReaperOptions>;
}
