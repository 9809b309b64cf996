import type { DenialCode, Grant, InitiatorProof, OutputEvent } from '../events/schemas.ts';
import type { CredentialRecord, CredentialState, LeaseRecord, LeaseState, LeaseWithCredentials } from './records.ts';

/** Time, injectable so tests and the chaos runner control it. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface EventPublisher {
  publish(event: OutputEvent): Promise<void>;
}

/** Secret material as delivered to the workload: flat string fields (username, password, …). */
export type SecretMaterial = Record<string, string>;

export interface SecretPutInput {
  name: string;
  value: SecretMaterial;
  taskId: string;
  grant: Grant;
  workload: string;
  /** AWS principal allowed to read the secret, from the policy rule (AWS runtime only). */
  readerPrincipal?: string;
}

export interface SecretStore {
  put(input: SecretPutInput): Promise<{ name: string; arn?: string }>;
  get(name: string): Promise<SecretMaterial | undefined>;
  /** Idempotent: deleting a secret that is gone succeeds. */
  delete(name: string): Promise<void>;
  exists(name: string): Promise<boolean>;
}

/** What a driver knows about the lease it works for. */
export interface LeaseContext {
  taskId: string;
  workload: string;
  initiator?: string;
  expiresAt: number;
  durationSeconds: number;
}

export interface IssueContext {
  lease: LeaseContext;
  grant: Grant;
  externalId: string;
}

export interface IssuedCredential {
  secret: SecretMaterial;
  naturalExpiry: number;
  metadata?: Record<string, string>;
}

export interface RevokeContext {
  taskId: string;
  grant: Grant;
  externalId: string;
  metadata?: Record<string, string>;
  naturalExpiry?: number;
  /**
   * When the write-ahead intent was recorded: nothing issued for it can predate this, so a driver
   * whose credentials have a maximum lifetime can bound a credential it knows nothing else about.
   */
  intentAt?: number;
}

export interface VerifyContext extends RevokeContext {
  /** The old secret if still retrievable; a driver proves rejection with it when it can. */
  secret?: SecretMaterial;
}

export type VerifyResult = 'rejected' | 'still-valid' | 'inconclusive';

/** One per target (a configured database, a role): docs/architecture.md, "Ports". */
export interface TargetDriver {
  readonly kind: string;
  externalId(taskId: string, grant: Grant): string;
  issue(ctx: IssueContext): Promise<IssuedCredential>;
  /** Idempotent, by externalId: a credential already gone is success. */
  revoke(ctx: RevokeContext): Promise<void>;
  verify(ctx: VerifyContext): Promise<VerifyResult>;
  /** externalIds that exist on the target and look like ours, for reconciliation. */
  listManaged?(): Promise<string[]>;
  close?(): Promise<void>;
}

/** Resolves a grant's target name to its driver. */
export interface TargetRegistry {
  get(target: string): TargetDriver | undefined;
  all(): TargetDriver[];
  /**
   * Each driver with its configured target name (reconciliation reports by name). Optional:
   * wrappers such as chaos's faultyTargets offer only `names()`.
   */
  entries?(): Array<{ name: string; driver: TargetDriver }>;
}

export interface VerifiedWorkload {
  spiffeId: string;
  trustDomain: string;
  /** Hash of the SVID's `jti` (or of the whole token when there is none): the replay key. */
  replayKey: string;
  expiresAt: number;
}

/** Verifies a JWT-SVID; throws {@link DenialError} with an `svid-*` code. */
export interface SvidVerifier {
  verify(token: string): Promise<VerifiedWorkload>;
}

export interface PolicyRequest {
  workload: string;
  grants: Grant[];
  durationSeconds: number;
  initiator?: string;
  /** How the initiator is known; `asserted` (the sender's word) until a signed assertion is verified. */
  initiatorProof?: InitiatorProof;
}

export type EndDecision = { allowed: true } | { allowed: false; message: string };

export type PolicyDecision =
  | { allowed: true; rule: string; maxLeaseSeconds: number; readerPrincipal?: string }
  | { allowed: false; code: DenialCode; message: string; rule?: string };

export interface PolicyEvaluator {
  evaluate(request: PolicyRequest): PolicyDecision;
  /**
   * May `ender` (a verified SPIFFE ID other than the workload) end `workload`'s tasks? Only an
   * engine the workload's rule lists in `endedBy`.
   */
  mayEnd(ender: string, workload: string): EndDecision;
}

/** Answers a Step Functions task token (AWS) or does nothing (local). */
export interface TaskCallback {
  success(taskToken: string, output: unknown): Promise<void>;
  failure(taskToken: string, error: string, cause: string): Promise<void>;
}

export interface OpenItemsPage {
  leases: LeaseRecord[];
  credentials: CredentialRecord[];
  cursor?: string;
}

/** One conditional update inside `Ledger.transact`: the arguments of updateLease or updateCredential. */
export type LedgerWrite =
  | { kind: 'lease'; taskId: string; from: LeaseState[]; patch: Partial<LeaseRecord>; guard?: Parameters<Ledger['updateLease']>[3] }
  | { kind: 'credential'; taskId: string; grantKey: string; from: CredentialState[]; patch: Partial<CredentialRecord> };

/** DynamoDB's limit on the items of one transaction. */
export const MAX_TRANSACTION_WRITES = 100;

/**
 * The ledger (docs/architecture.md, "Ports" and "The state machine"). Every state change is a conditional write: methods
 * that change state return `false` when the expected state did not hold, so concurrent
 * deliveries of one event cannot both win. The core says where an item stands in the open index:
 * a record's `nextCheckAt` is its due time there (an item with none is finished, and its
 * retention starts), so a write never needs to read the item first.
 */
export interface Ledger {
  getLease(taskId: string): Promise<LeaseWithCredentials | undefined>;
  /** Creates the lease item if no item exists for the task; open (indexed) while it has `nextCheckAt`. */
  createLease(lease: LeaseRecord): Promise<boolean>;
  /**
   * Conditional on the current state being one of `from` (and `extraCondition`); applies `patch`
   * (undefined values remove attributes). A patch that sets `nextCheckAt` moves the item in the open
   * index, one that removes it finishes the item; any other leaves its place unchanged.
   */
  updateLease(
    taskId: string,
    from: LeaseState[],
    patch: Partial<LeaseRecord>,
    extraCondition?: {
      lockedBefore?: number;
      notEndRequested?: boolean;
      /** The lease's current denial has this code (guards reopening and tombstoning a denial). */
      denialCode?: DenialCode;
      notTombstone?: boolean;
    },
  ): Promise<boolean>;
  /** Write-ahead intent: creates the credential item if absent. */
  createCredential(credential: CredentialRecord): Promise<boolean>;
  /** Like updateLease: conditional on `from`; `nextCheckAt` in the patch moves or finishes the item. */
  updateCredential(taskId: string, grantKey: string, from: CredentialState[], patch: Partial<CredentialRecord>): Promise<boolean>;
  /**
   * Several conditional updates as one all-or-nothing write (a DynamoDB transaction): each is
   * what `updateLease`/`updateCredential` would do, and either every condition holds and all
   * apply, or none does and it returns false. Optional: without it (or for more than
   * MAX_TRANSACTION_WRITES) the core writes them one by one, as it does after a false.
   */
  transact?(writes: readonly LedgerWrite[]): Promise<boolean>;
  /** Records an SVID's use; false when the same replay key was already used by another task. */
  claimSvid(replayKey: string, taskId: string, expiresAt: number): Promise<boolean>;
  /** Leases and credentials that are not finished and whose `nextCheckAt` is at or before `dueBefore`, soonest first. */
  listOpen(dueBefore: number, limit: number, cursor?: string): Promise<OpenItemsPage>;
  /** Every lease with its credentials whose requestedAt falls in the window, for reports. */
  listLeases(filter: { since?: number; until?: number; workload?: string }): Promise<LeaseWithCredentials[]>;
}

export type { CredentialRecord, CredentialState, LeaseRecord, LeaseState, LeaseWithCredentials };

/** An operator's lock on a workload (break-glass): while it holds, the workload gets no new lease. */
export interface WorkloadLock {
  workload: string;
  /** Who locked it: the operator's principal (CLI user, IAM ARN). */
  by: string;
  reason: string;
  lockedAt: number;
}

/**
 * Break-glass locks (`tasklease revoke --workload`, `tasklease unlock`). A lock is never deleted:
 * unlocking records who lifted it and why, so the item says what happened last.
 */
export interface WorkloadLocks {
  /** The lock that holds now, if any. */
  get(workload: string): Promise<WorkloadLock | undefined>;
  /** Locks (or re-locks, with the new who and why) the workload. */
  lock(lock: WorkloadLock): Promise<void>;
  /** Lifts the lock; returns the lock it lifted, or undefined when none held. */
  unlock(workload: string, by: string, reason: string, at: number): Promise<WorkloadLock | undefined>;
}
