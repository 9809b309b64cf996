import type { DenialCode, EndedAtSource, Grant, InitiatorProof, Outcome, Workflow } from '../events/schemas.ts';

export type LeaseState = 'issuing' | 'active' | 'ending' | 'closed' | 'denied';
export type CredentialState = 'intent' | 'issued' | 'revoking' | 'verified' | 'still-valid';
export type EndOutcome = Outcome | 'expired' | 'issue-failed';

/** All times are epoch milliseconds. No record ever holds secret material. */
export interface LeaseRecord {
  taskId: string;
  state: LeaseState;
  /** SPIFFE ID of the workload; absent only when the SVID itself was rejected. */
  workload?: string;
  initiator?: string;
  /** How the initiator is known (`asserted`: the sender's word); set whenever initiator is. */
  initiatorProof?: InitiatorProof;
  workflow?: Workflow;
  /** Policy rule that allowed the lease. */
  rule?: string;
  grants: Grant[];
  requestedAt: number;
  issuedAt?: number;
  expiresAt?: number;
  /** When the task ended: the instant its trust debt is measured from (trust-debt.ts `endTimeOf`). */
  endedAt?: number;
  /** Where endedAt came from: the engine, the queue's arrival time, the broker, expiry, an operator. */
  endedAtSource?: EndedAtSource;
  /** The engine's endedAt was outside the accepted window (clock skew, before issue) and was clamped. */
  endedAtClamped?: boolean;
  outcome?: EndOutcome;
  /**
   * A `Task Ended` that arrived before any `Task Started` (or ended a refused one): a late start
   * is denied if the tombstone's `endedBy` may end that start's workload, and proceeds otherwise.
   */
  tombstone?: boolean;
  /**
   * Verified SPIFFE ID that sent the `Task Ended`, or `operator:<principal>` for a break-glass
   * revoke (absent when the broker ended it, at expiry).
   */
  endedBy?: string;
  /** Why an operator ended it (break-glass revoke). */
  endReason?: string;
  /** Set when `Task Ended` arrives while issuing is still in progress; the issuer ends the lease. */
  endRequested?: boolean;
  denial?: { code: DenialCode; message: string };
  /** Whoever holds this lease's issuing/ending work, and until when (for takeover after a crash). */
  lockedUntil?: number;
  /** Step Functions task token to answer; removed once answered. */
  taskToken?: string;
  closedAt?: number;
  /**
   * When the reaper should look at this lease next: its place in the ledger's open index, set by
   * every transition that moves it (transitions.ts); absent once the lease is finished.
   */
  nextCheckAt?: number;
}

export interface CredentialRecord {
  taskId: string;
  grant: Grant;
  target: string;
  kind: string;
  /** Deterministic name on the target (role name, session name), so a crash can be cleaned up. */
  externalId: string;
  state: CredentialState;
  workload: string;
  initiator?: string;
  workflow?: Workflow;
  rule?: string;
  intentAt: number;
  issuedAt?: number;
  naturalExpiry?: number;
  /** Non-secret facts the driver needs later (session ARN, role id). */
  metadata?: Record<string, string>;
  secretName?: string;
  secretArn?: string;
  /** The end this credential's trust debt is measured from (the lease's endedAt). */
  endedAt?: number;
  /** The broker started revoking it (first attempt). */
  revokeStartedAt?: number;
  /** The target refuses it: when the driver's revoke returned. */
  revokedAt?: number;
  verifiedAt?: number;
  verifyAttempts: number;
  trustDebtMs?: number;
  avoidedDebtMs?: number;
  /** The split of trustDebtMs (trust-debt.ts `debtSplit`), stored with the proof. */
  pipelineMs?: number;
  revokeMs?: number;
  proofMs?: number;
  exposureMs?: number;
  lastError?: string;
  /**
   * When the reaper should look at this credential next: its place in the ledger's open index
   * (transitions.ts); absent once verified.
   */
  nextCheckAt?: number;
}

export type LeaseWithCredentials = { lease: LeaseRecord; credentials: CredentialRecord[] };
