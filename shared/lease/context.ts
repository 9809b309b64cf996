import type { DenialCode, Grant } from '../events/schemas.ts';
import type {
  Clock,
  EventPublisher,
  Ledger,
  PolicyEvaluator,
  SecretStore,
  SvidVerifier,
  TargetRegistry,
  TaskCallback,
  WorkloadLocks,
} from './ports.ts';
import type { CredentialRecord, LeaseRecord } from './records.ts';

/*
 * What every job of the lease core shares: its ports, options and results. The jobs (issue.ts,
 * end.ts, verify.ts, rollback.ts, denials.ts, announce.ts) are functions of a `Core`; the
 * LeaseLifecycle facade (lifecycle.ts) builds one and delegates to them.
 */

/** Structured, secret-free logging; Powertools' Logger and the local console logger both fit. */
export interface LifecycleLogger {
  info(message: string, attributes?: Record<string, unknown>): void;
  warn(message: string, attributes?: Record<string, unknown>): void;
  error(message: string, attributes?: Record<string, unknown>): void;
}

/** Hooks for metrics and live views; every method is optional and must not throw. */
export interface LifecycleObserver {
  issued?(lease: LeaseRecord, credentials: CredentialRecord[], latencyMs: number): void;
  denied?(code: DenialCode, lease: Pick<LeaseRecord, 'taskId' | 'workload'>): void;
  verified?(credential: CredentialRecord): void;
  stillValid?(credential: CredentialRecord): void;
  revocationFailed?(credential: CredentialRecord, error: string): void;
  ended?(lease: LeaseRecord): void;
}

/** Hands a credential that is not yet proven dead to a later attempt (an SQS delay in AWS). */
export interface ReverifyScheduler {
  schedule(taskId: string, grant: Grant, delayMs: number): Promise<void>;
}

export interface LifecycleOptions {
  /** How long one worker owns a lease's issuing or ending before another may take over. */
  lockMs: number;
  /** How long one call keeps re-verifying before handing over to the scheduler/reaper. */
  verifyDeadlineMs: number;
  verifyInitialDelayMs: number;
  verifyMaxDelayMs: number;
  /** Retry delay cap for a revocation that keeps failing (it is never given up). */
  retryMaxDelayMs: number;
  /** How far an engine's own `endedAt` may lie past the event's arrival (the config's clockSkewSeconds). */
  clockSkewMs: number;
}

export const DEFAULT_LIFECYCLE_OPTIONS: LifecycleOptions = {
  lockMs: 60_000,
  verifyDeadlineMs: 30_000,
  verifyInitialDelayMs: 20,
  verifyMaxDelayMs: 2_000,
  retryMaxDelayMs: 5 * 60_000,
  clockSkewMs: 30_000,
};

export interface LifecycleDeps {
  ledger: Ledger;
  targets: TargetRegistry;
  secrets: SecretStore;
  events: EventPublisher;
  identity: SvidVerifier;
  policy: PolicyEvaluator;
  clock: Clock;
  callback?: TaskCallback;
  /** Break-glass workload locks; without it no workload can be locked. */
  locks?: WorkloadLocks;
  reverify?: ReverifyScheduler;
  log?: LifecycleLogger;
  observer?: LifecycleObserver;
  options?: Partial<LifecycleOptions>;
}

export type StartResult =
  | { status: 'issued'; taskId: string; credentials: CredentialRecord[] }
  | { status: 'denied'; taskId: string; code: DenialCode; message: string }
  | { status: 'duplicate'; taskId: string; state: LeaseRecord['state'] }
  | { status: 'in-progress'; taskId: string };

export type EndResult =
  | { status: 'closed'; taskId: string; credentials: CredentialRecord[] }
  | { status: 'open-debt'; taskId: string; credentials: CredentialRecord[] }
  | { status: 'tombstoned'; taskId: string }
  /** The end's SVID did not verify, or its sender may not end this task: nothing changed. */
  | { status: 'rejected'; taskId: string; code: DenialCode; message: string }
  | { status: 'deferred'; taskId: string }
  | { status: 'duplicate'; taskId: string; state: LeaseRecord['state'] }
  | { status: 'in-progress'; taskId: string };

/** The ports and resolved options every job of the core runs with. */
export interface Core {
  readonly deps: LifecycleDeps;
  readonly opts: LifecycleOptions;
  readonly log: LifecycleLogger;
}

const silentLog: LifecycleLogger = { info() {}, warn() {}, error() {} };

export function createCore(deps: LifecycleDeps): Core {
  return { deps, opts: { ...DEFAULT_LIFECYCLE_OPTIONS, ...deps.options }, log: deps.log ?? silentLog };
}

export { secretNameFor } from './secret-name.ts';
