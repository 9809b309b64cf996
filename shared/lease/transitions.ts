import { grantKey } from '../events/schemas.ts';
import { MAX_TRANSACTION_WRITES } from './ports.ts';
import type { Ledger, LedgerWrite } from './ports.ts';
import type { CredentialRecord, CredentialState, LeaseRecord, LeaseState } from './records.ts';

/*
 * The state machine of leases and credentials, in one place (docs/architecture.md, "The state
 * machine"): which transition is legal from which states, and when each state's item is next due
 * in the ledger's open index. Every conditional write of the core takes its `from` states from
 * here, and every write that changes an item's due time carries it as `nextCheckAt`: the ledger
 * indexes that field and derives nothing itself.
 */

/** Finished items leave the open index; the ledger's retention (TTL) starts. */
export const FINISHED_LEASE_STATES: readonly LeaseState[] = ['closed', 'denied'];
export const FINISHED_CREDENTIAL_STATES: readonly CredentialState[] = ['verified'];

type Rule<S> = { readonly from: readonly S[]; readonly to: S | 'unchanged' };

/**
 * Every lease transition. `from: []` is a creation (the item must not exist yet); `unchanged`
 * keeps whatever state of `from` the item is in.
 */
export const LEASE_TRANSITIONS = {
  /** Task Started passed every check: the lease exists, issuing under our lock. */
  open: { from: [], to: 'issuing' },
  /** Task Started was refused (bad SVID, policy, unknown target, replay). */
  deny: { from: [], to: 'denied' },
  /** Task Ended before any Task Started: a closed tombstone a late start is denied by. */
  tombstone: { from: [], to: 'closed' },
  /** A corrected Task Started overturns a reopenable denial. */
  reopen: { from: ['denied'], to: 'issuing' },
  /** A reopenable denial takes the latest refusal's reason. */
  redeny: { from: ['denied'], to: 'unchanged' },
  /**
   * A Task Started whose workload the tombstone's ender may not end: the tombstone does not bind
   * it (another workload cannot block its task id), so the start opens the lease over it.
   */
  overturnTombstone: { from: ['closed', 'denied'], to: 'issuing' },
  /** Task Ended for a reopenable denial: it can no longer become a lease. */
  tombstoneDenial: { from: ['denied'], to: 'unchanged' },
  /** A late Task Started the tombstone binds is denied, and the tombstone records what it asked. */
  refuseLateStart: { from: ['closed', 'denied'], to: 'unchanged' },
  /** Another worker's issuing lock ran out: take the lease over. */
  takeOverIssuing: { from: ['issuing'], to: 'unchanged' },
  /** Task Ended while issuing: the issuer ends the lease once it is done. */
  requestEnd: { from: ['issuing'], to: 'unchanged' },
  /** Every grant issued, and no end requested meanwhile. */
  activate: { from: ['issuing'], to: 'active' },
  /** Every grant issued, but Task Ended arrived meanwhile: straight to ending, never announced. */
  endWhileIssuing: { from: ['issuing'], to: 'ending' },
  /** Issuing failed and everything it made is proven revoked. */
  rollBackDenied: { from: ['issuing'], to: 'denied' },
  /** Issuing failed and something it made is not yet proven revoked: ended, debt open. */
  rollBackOpen: { from: ['issuing'], to: 'ending' },
  /** Task Ended (or the reaper, on expiry) for an active lease. */
  end: { from: ['active'], to: 'ending' },
  /** Another worker's ending lock ran out: take the end over. */
  takeOverEnding: { from: ['ending'], to: 'unchanged' },
  /** Some credential is not yet proven rejected: come back at its next check. */
  awaitProof: { from: ['ending'], to: 'unchanged' },
  /** Every credential proven rejected. */
  close: { from: ['ending'], to: 'closed' },
} as const satisfies Record<string, Rule<LeaseState>>;

export const CREDENTIAL_TRANSITIONS = {
  /** Write-ahead intent, before anything reaches the target. */
  intend: { from: [], to: 'intent' },
  /** Created on the target and delivered to the secret store. */
  issue: { from: ['intent'], to: 'issued' },
  /** Revocation starts (or starts again) from any unproven state. */
  startRevoking: { from: ['intent', 'issued', 'revoking', 'still-valid'], to: 'revoking' },
  /** One verification attempt that did not prove rejection. */
  recordAttempt: { from: ['revoking'], to: 'unchanged' },
  /** The target rejects it and its secret is gone. */
  verify: { from: ['revoking'], to: 'verified' },
  /** Not proven (revoke failed, or verify inconclusive): retried after a backoff. */
  leaveRevoking: { from: ['revoking', 'still-valid'], to: 'revoking' },
  /** The target still accepts it after revocation: retried after a backoff. */
  markStillValid: { from: ['revoking', 'still-valid'], to: 'still-valid' },
} as const satisfies Record<string, Rule<CredentialState>>;

export type LeaseTransitionName = keyof typeof LEASE_TRANSITIONS;
export type CredentialTransitionName = keyof typeof CREDENTIAL_TRANSITIONS;

/**
 * When an unfinished lease is next due, by state: issuing and ending when their worker's lock
 * runs out (a takeover is then allowed), active when the lease expires (a lost Task Ended).
 */
export function leaseDue(lease: LeaseRecord): number | undefined {
  switch (lease.state) {
    case 'issuing':
      return lease.lockedUntil ?? lease.requestedAt;
    case 'active':
      return lease.expiresAt ?? lease.requestedAt;
    case 'ending':
      return lease.lockedUntil ?? lease.endedAt ?? lease.requestedAt;
    case 'closed':
    case 'denied':
      return undefined;
  }
}

/** Fields a state's due time is read from: a write that sets one moves the due time. */
const LEASE_DUE_FIELDS: Record<LeaseState, readonly (keyof LeaseRecord)[]> = {
  issuing: ['lockedUntil', 'requestedAt'],
  active: ['expiresAt', 'requestedAt'],
  ending: ['lockedUntil', 'endedAt', 'requestedAt'],
  closed: [],
  denied: [],
};

/*
 * A credential's due time is a decision of the step that writes it, so each sets `nextCheckAt`
 * itself: an intent and a revocation in progress at the writer's lock (due if the worker dies),
 * an issued credential at its lease's expiry (so open debt can count a lost Task Ended, see
 * trust-debt.ts), an unproven one after its retry backoff. A verified one has none.
 */

export interface LeaseWrite {
  from: LeaseState[];
  patch: Partial<LeaseRecord>;
}

/**
 * The conditional write of transition `name` applied to `base` (the core's view of the lease):
 * its `from` states, and the patch with the new state and, when it moves, the due time.
 */
export function leaseWrite(name: LeaseTransitionName, base: LeaseRecord, patch: Partial<LeaseRecord>): LeaseWrite {
  const rule: Rule<LeaseState> = LEASE_TRANSITIONS[name];
  if (rule.from.length === 0) throw new RangeError(`lease transition ${name} creates an item: use newLease`);
  const to = rule.to === 'unchanged' ? base.state : rule.to;
  const full: Partial<LeaseRecord> = { ...patch };
  const changesState = rule.to !== 'unchanged';
  if (changesState) full.state = to;
  if (changesState || LEASE_DUE_FIELDS[to].some((f) => f in patch)) full.nextCheckAt = leaseDue({ ...base, ...patch, state: to });
  return { from: [...rule.from], patch: full };
}

/** A lease record as transition `name` creates it, with its due time. */
export function newLease(name: 'open' | 'deny' | 'tombstone', record: Omit<LeaseRecord, 'state' | 'nextCheckAt'>): LeaseRecord {
  const lease = { ...record, state: LEASE_TRANSITIONS[name].to } as LeaseRecord;
  const due = leaseDue(lease);
  return due === undefined ? lease : { ...lease, nextCheckAt: due };
}

/** Applies lease transition `name` through the ledger's conditional write. */
export function transitionLease(
  ledger: Ledger,
  name: LeaseTransitionName,
  base: LeaseRecord,
  patch: Partial<LeaseRecord>,
  guard?: Parameters<Ledger['updateLease']>[3],
): Promise<boolean> {
  const { from, patch: full } = leaseWrite(name, base, patch);
  return ledger.updateLease(base.taskId, from, full, guard);
}

export interface CredentialWrite {
  from: CredentialState[];
  patch: Partial<CredentialRecord>;
}

/** The conditional write of credential transition `name`; `nextCheckAt` must be set by the step (absent once finished). */
export function credentialWrite(name: CredentialTransitionName, patch: Partial<CredentialRecord>): CredentialWrite {
  const rule: Rule<CredentialState> = CREDENTIAL_TRANSITIONS[name];
  const full: Partial<CredentialRecord> = { ...patch };
  if (rule.to !== 'unchanged') {
    full.state = rule.to;
    if (FINISHED_CREDENTIAL_STATES.includes(rule.to)) full.nextCheckAt = undefined;
    else if (typeof patch.nextCheckAt !== 'number')
      throw new TypeError(`credential transition ${name} must say when the credential is next due`);
  }
  return { from: [...rule.from], patch: full };
}

/** Applies credential transition `name` to `cred` through the ledger's conditional write. */
export function transitionCredential(
  ledger: Ledger,
  name: CredentialTransitionName,
  cred: Pick<CredentialRecord, 'taskId' | 'grant'>,
  patch: Partial<CredentialRecord>,
): Promise<boolean> {
  const { from, patch: full } = credentialWrite(name, patch);
  return ledger.updateCredential(cred.taskId, grantKey(cred.grant), from, full);
}

export const isFinishedLease = (state: LeaseState): boolean => FINISHED_LEASE_STATES.includes(state);
export const isFinishedCredential = (state: CredentialState): boolean => FINISHED_CREDENTIAL_STATES.includes(state);

/** Lease transition `name` as one part of a transaction (see {@link transitionTogether}). */
export function leaseStep(
  name: LeaseTransitionName,
  base: LeaseRecord,
  patch: Partial<LeaseRecord>,
  guard?: Parameters<Ledger['updateLease']>[3],
): LedgerWrite {
  const { from, patch: full } = leaseWrite(name, base, patch);
  return { kind: 'lease', taskId: base.taskId, from, patch: full, ...(guard ? { guard } : {}) };
}

/** Credential transition `name` as one part of a transaction. */
export function credentialStep(
  name: CredentialTransitionName,
  cred: Pick<CredentialRecord, 'taskId' | 'grant'>,
  patch: Partial<CredentialRecord>,
): LedgerWrite {
  const { from, patch: full } = credentialWrite(name, patch);
  return { kind: 'credential', taskId: cred.taskId, grantKey: grantKey(cred.grant), from, patch: full };
}

/**
 * Applies transitions that always happen together in one ledger request, all or none. False when
 * a condition failed, or when the ledger cannot (no `transact`, too many parts): nothing was
 * written, and the caller takes the one-by-one path, which decides every race as before.
 */
export async function transitionTogether(ledger: Ledger, steps: readonly LedgerWrite[]): Promise<boolean> {
  if (!ledger.transact || steps.length === 0 || steps.length > MAX_TRANSACTION_WRITES) return false;
  return ledger.transact(steps);
}
