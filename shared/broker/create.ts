import { LeaseLifecycle } from '../lease/lifecycle.ts';
import type { EndArrival, EndResult, StartResult } from '../lease/lifecycle.ts';
import { createReaperState } from '../lease/reaper.ts';
import type { ReaperOptions, ReaperReport } from '../lease/reaper.ts';
import type { BrokerOptions, BrokerPorts } from './ports.ts';
import { runOperator } from './operator.ts';
import type { OperatorResult } from './operator.ts';
import { reapAndMeasure } from './reap.ts';
import { reverifyDue } from './reverify.ts';
import type { ReverifyOutcome } from './reverify.ts';
import type { ReverifyMessage } from './reverify-message.ts';

/** The broker's operations: what a queue, a schedule or a test calls. */
export interface Broker {
  /** A `Task Started` detail (validated here): issue, deny, or recognise a duplicate. */
  taskStarted(detail: unknown): Promise<StartResult>;
  /**
   * A `Task Ended` detail (validated here): revoke and prove. `arrival.queuedAt` is when it
   * reached the broker's queue (SQS SentTimestamp, the local bus's put time): the end its trust
   * debt is measured from when the engine sent no `endedAt`.
   */
  taskEnded(detail: unknown, arrival?: EndArrival): Promise<EndResult>;
  /** A re-verification came due (SQS message, local delay queue). */
  reverifyDue(message: ReverifyMessage): Promise<ReverifyOutcome>;
  /** One reaper run with the broker's budget, then its open-debt and blast-radius gauges. */
  reap(options?: Partial<ReaperOptions>): Promise<ReaperReport>;
  /**
   * A break-glass operator request (operator.ts): revoke a task, or lock a workload and revoke
   * its live leases, or unlock it. Throws OperatorRequestError for a malformed request.
   */
  operator(request: unknown): Promise<OperatorResult>;
  /** The core, for callers that drive single steps (tests, the reaper's own jobs). */
  readonly lifecycle: LeaseLifecycle;
  /** The verification budget of one call, handlers and reaper alike. */
  readonly verifyDeadlineMs: number;
  readonly ports: Readonly<BrokerPorts>;
  /** Closes the target drivers when the registry can be closed. */
  close(): Promise<void>;
}

/**
 * The one place the broker's graph is wired, for the Lambda functions, the local runtime, the
 * chaos harness and the bench alike (docs/architecture.md, "The two runtimes"). Domain decisions
 * (closing a lease when its last credential is proven, the reaper's budget and gauges) live here
 * or in the core, never in a runtime.
 */
export function createBroker(ports: BrokerPorts, options: BrokerOptions): Broker {
  const { settings, rules } = options.config;
  const verifyDeadlineMs = options.lifecycle?.verifyDeadlineMs ?? options.verifyDeadlineMs ?? settings.verifyDeadlineSeconds * 1000;
  // The broker's ports are the lifecycle's, plus the reaper's metrics (which it ignores).
  // The clock skew allowed for SVIDs also bounds an engine's own endedAt.
  const clockSkewMs = (options.config.clockSkewSeconds ?? 30) * 1000;
  const lifecycle = new LeaseLifecycle({ ...ports, options: { clockSkewMs, ...options.lifecycle, verifyDeadlineMs } });
  // One per broker (per process): the per-target token buckets and the reconcile cadence span runs.
  const state = createReaperState();
  const window = {
    intervalMs: settings.reaperIntervalSeconds * 1000,
    maxLeaseMs: Math.max(0, ...rules.map((r) => r.maxLeaseSeconds)) * 1000,
  };
  const reverifyDeps = { lifecycle, ledger: ports.ledger, clock: ports.clock, reverify: ports.reverify };
  const reapDeps = {
    lifecycle,
    ledger: ports.ledger,
    clock: ports.clock,
    targets: ports.targets,
    state,
    metrics: ports.metrics,
    log: ports.log,
  };
  return {
    taskStarted: (detail) => lifecycle.taskStarted(detail),
    taskEnded: (detail, arrival) => lifecycle.taskEnded(detail, arrival),
    reverifyDue: (message) => reverifyDue(reverifyDeps, message),
    reap: (o) => reapAndMeasure(reapDeps, window, { verifyDeadlineMs, ...options.reaper, ...o }),
    operator: (request) =>
      runOperator({ lifecycle, ledger: ports.ledger, clock: ports.clock, locks: ports.locks, log: ports.log }, request),
    lifecycle,
    verifyDeadlineMs,
    ports,
    close: async () => {
      await ports.targets.close?.();
    },
  };
}
