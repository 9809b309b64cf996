import type { Outcome } from '../events/schemas.ts';
import { createCore } from './context.ts';
import type { Core, EndResult, LifecycleDeps, StartResult } from './context.ts';
import { endLease, revokeLease, taskEnded } from './end.ts';
import type { EndArrival, EndOptions } from './end.ts';
import type { CredentialRecord, EndOutcome, LeaseRecord } from './records.ts';
import { rollBack } from './rollback.ts';
import { taskStarted } from './start.ts';
import { revokeAndVerify } from './verify.ts';

export { DEFAULT_LIFECYCLE_OPTIONS, secretNameFor } from './context.ts';
export type { EndArrival, EndOptions } from './end.ts';
export type {
  EndResult,
  LifecycleDeps,
  LifecycleLogger,
  LifecycleObserver,
  LifecycleOptions,
  ReverifyScheduler,
  StartResult,
} from './context.ts';

/**
 * The lease lifecycle core (docs/architecture.md, "Layers"): a small facade over its jobs
 * (start.ts and issue.ts, end.ts, verify.ts, rollback.ts, denials.ts, announce.ts; the state
 * machine in transitions.ts). Knows the ports only, so the Lambda handlers and the local runtime
 * run exactly this code with different adapters.
 */
export class LeaseLifecycle {
  private readonly core: Core;

  constructor(deps: LifecycleDeps) {
    this.core = createCore(deps);
  }

  /**
   * Answers a `Task Started` detail. Throws InvalidEventError for a malformed detail (after
   * publishing `Lease Denied` when a task id can be read) so a queue can dead-letter it.
   */
  taskStarted(raw: unknown): Promise<StartResult> {
    return taskStarted(this.core, raw);
  }

  /**
   * Answers a `Task Ended` detail: only an authenticated end (its SVID names the lease's workload
   * or an engine its rule allows) ends anything. Throws InvalidEventError for a malformed one.
   */
  taskEnded(raw: unknown, arrival?: EndArrival): Promise<EndResult> {
    return taskEnded(this.core, raw, arrival);
  }

  /** Ends a lease (from an authenticated `Task Ended` with its `ender`, or the reaper with outcome `expired`). */
  endLease(taskId: string, outcome: EndOutcome, endedAt: number, ender?: string, options?: EndOptions): Promise<EndResult> {
    return endLease(this.core, taskId, outcome, endedAt, ender, options);
  }

  /** Revokes and verifies every credential of an `ending` lease we hold the lock of. */
  revokeLease(lease: LeaseRecord, credentials: CredentialRecord[]): Promise<EndResult> {
    return revokeLease(this.core, lease, credentials);
  }

  /**
   * Revokes one credential on its target and retries verification with backoff until the
   * target rejects it or this call's deadline passes; an unproven one keeps a `nextCheckAt`.
   */
  revokeAndVerify(cred: CredentialRecord, endedAt: number, deadlineMs?: number): Promise<CredentialRecord> {
    return revokeAndVerify(this.core, cred, endedAt, deadlineMs);
  }

  /** Revokes everything a failed issue left behind and records the lease as denied. */
  rollBack(lease: LeaseRecord, message: string): Promise<void> {
    return rollBack(this.core, lease, message);
  }
}

export type { Outcome };
