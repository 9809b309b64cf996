import { TaskEndedSchema } from '../events/schemas.ts';
import type { TaskEnded } from '../events/schemas.ts';
import { parseDetail } from '../events/parse.ts';
import { announceEndRejected, announceInvalid, announceRevoked } from './announce.ts';
import type { Core, EndResult } from './context.ts';
import { isReopenable } from './denials.ts';
import { DenialError } from './errors.ts';
import type { VerifiedWorkload } from './ports.ts';
import type { CredentialRecord, EndOutcome, LeaseRecord } from './records.ts';
import {
  CREDENTIAL_TRANSITIONS,
  credentialStep,
  isFinishedCredential,
  LEASE_TRANSITIONS,
  leaseStep,
  newLease,
  transitionLease,
  transitionTogether,
} from './transitions.ts';
import { endTimeOf, notBeforeIssue } from './trust-debt.ts';
import type { EndTime } from './trust-debt.ts';
import { revokeAndVerify } from './verify.ts';

/**
 * Answers a `Task Ended` detail. Its SVID must verify (like a start's, but without the start's
 * single-use claim: an end may reuse a still-valid SVID) and name the lease's workload or an
 * engine its rule lists in `endedBy`; otherwise nothing changes and the end is announced as
 * refused (`Lease Denied`, request `end`). Throws InvalidEventError for a malformed detail, after
 * announcing it the same way.
 */
export async function taskEnded(core: Core, raw: unknown, arrival: EndArrival = {}): Promise<EndResult> {
  // Read first: the end is measured from before the broker's own work on it.
  const receivedAt = core.deps.clock.now();
  let detail: TaskEnded;
  try {
    detail = parseDetail(TaskEndedSchema, raw, 'Task Ended');
  } catch (err) {
    await announceInvalid(core, raw, err, 'end');
    throw err;
  }
  let verified: VerifiedWorkload;
  try {
    verified = await core.deps.identity.verify(detail.svid);
  } catch (err) {
    // A trust bundle that cannot be fetched is not the sender's fault: thrown, so the end is retried.
    if (!(err instanceof DenialError)) throw err;
    const message = `the Task Ended SVID was refused (${err.denial}: ${err.message}); nothing was ended or revoked`;
    return rejectEnd(core, detail.taskId, undefined, 'end-unauthenticated', message);
  }
  const ender = verified.spiffeId;
  // An end SVID is bound to one task's end (its own namespace, apart from the start's single-use
  // claim, so the start's SVID may end its task): copied off the bus, it ends nothing else.
  if (!(await core.deps.ledger.claimSvid(`${END_CLAIM_PREFIX}${verified.replayKey}`, detail.taskId, verified.expiresAt))) {
    const message = 'this JWT-SVID already ended another task; an end SVID ends one task only: mint a fresh SVID per Task Ended';
    return rejectEnd(core, detail.taskId, ender, 'end-svid-reused', `${message}; nothing was ended or revoked`);
  }
  const end = endTimeOf({ claimed: detail.endedAt, queuedAt: arrival.queuedAt, now: receivedAt, skewMs: core.opts.clockSkewMs });
  return endLease(core, detail.taskId, detail.outcome, end.endedAt, ender, { endTime: end });
}

/** Claims of end SVIDs live beside the start's replay claims, under their own prefix. */
export const END_CLAIM_PREFIX = 'end:';

/** May the verified `ender` end `workload`'s tasks? The workload itself, or an engine its rule allows. */
export function mayEnd(core: Core, ender: string, workload: string): { allowed: true } | { allowed: false; message: string } {
  return ender === workload ? { allowed: true } : core.deps.policy.mayEnd(ender, workload);
}

async function rejectEnd(
  core: Core,
  taskId: string,
  ender: string | undefined,
  code: 'end-unauthenticated' | 'end-not-allowed' | 'end-svid-reused',
  message: string,
): Promise<EndResult> {
  await announceEndRejected(core, taskId, ender, code, message);
  return { status: 'rejected', taskId, code, message };
}

export interface EndOptions {
  /**
   * A break-glass end by an operator (`ender` is `operator:<principal>`): no endedBy rule applies,
   * and it never leaves a tombstone; `reason` is recorded on the lease.
   */
  operator?: { reason: string };
  /** Where `endedAt` came from (trust-debt.ts `endTimeOf`); default: `operator` for an operator, `expiry` with no ender, else `broker`. */
  endTime?: Pick<EndTime, 'source' | 'clamped'>;
}

/** What the runtime knows of a `Task Ended`'s arrival: when it reached the broker's queue (epoch ms). */
export interface EndArrival {
  queuedAt?: number;
}

/** The lease fields of an end: when, from what source, and whether an engine's time was clamped (never before issue). */
function endFields(end: EndTime, lease?: LeaseRecord): Pick<LeaseRecord, 'endedAt' | 'endedAtSource' | 'endedAtClamped'> {
  const bounded = lease ? notBeforeIssue(end, lease.issuedAt ?? lease.requestedAt) : end;
  return { endedAt: bounded.endedAt, endedAtSource: bounded.source, ...(bounded.clamped ? { endedAtClamped: true } : {}) };
}

/**
 * Ends a lease: from an authenticated `Task Ended` (`ender` is its verified SPIFFE ID), or from
 * the broker itself (the reaper at expiry, with no ender). Only an authenticated end leaves a
 * tombstone, bound to its ender.
 */
export async function endLease(
  core: Core,
  taskId: string,
  outcome: EndOutcome,
  endedAt: number,
  ender?: string,
  options: EndOptions = {},
): Promise<EndResult> {
  const { ledger, clock } = core.deps;
  const endReason = options.operator?.reason;
  const source = options.endTime?.source ?? (options.operator ? 'operator' : ender === undefined ? 'expiry' : 'broker');
  const end: EndTime = { endedAt, source, clamped: options.endTime?.clamped ?? false };
  // Each lost race re-reads and decides again; five rounds is far more than one event's deliveries.
  for (let attempt = 0; attempt < 5; attempt++) {
    const found = await ledger.getLease(taskId);
    const now = clock.now();
    if (!found) {
      // The broker (expiry) or an operator ending an unknown task leaves nothing behind.
      if (ender === undefined || options.operator) return { status: 'duplicate', taskId, state: 'closed' };
      const tombstone = newLease('tombstone', {
        taskId,
        tombstone: true,
        endedBy: ender,
        grants: [],
        requestedAt: now,
        ...endFields(end),
        outcome,
        closedAt: now,
        // Guards overturning it (start.ts): a real lease never carries this denial, so a slow
        // overturn cannot land on a lease another start made of this tombstone meanwhile.
        denial: { code: 'task-already-ended', message: `task ${taskId} ended before it started` },
      });
      if (await ledger.createLease(tombstone)) {
        core.log.warn('Task Ended before Task Started: tombstone left, bound to its ender', { taskId, outcome, endedBy: ender });
        return { status: 'tombstoned', taskId };
      }
      continue;
    }
    const { lease } = found;
    const ended = endFields(end, lease);
    if (ender !== undefined && !options.operator && lease.workload !== undefined && !lease.tombstone) {
      const decision = mayEnd(core, ender, lease.workload);
      if (!decision.allowed) return rejectEnd(core, taskId, ender, 'end-not-allowed', `${decision.message}; nothing was ended or revoked`);
    }
    switch (lease.state) {
      case 'closed':
        return { status: 'duplicate', taskId, state: lease.state };
      case 'denied':
        // A reopenable denial could still become a lease: tombstone it, so a later start is refused.
        if (isReopenable(found) && ender !== undefined && !options.operator) {
          const guard = { denialCode: lease.denial?.code, notTombstone: true };
          if (await transitionLease(ledger, 'tombstoneDenial', lease, { tombstone: true, endedBy: ender, ...ended, outcome }, guard)) {
            return { status: 'tombstoned', taskId };
          }
          continue;
        }
        return { status: 'duplicate', taskId, state: lease.state };
      case 'issuing':
        if (lease.endRequested) return { status: 'duplicate', taskId, state: lease.state };
        if (await transitionLease(ledger, 'requestEnd', lease, { endRequested: true, ...ended, outcome, endedBy: ender, endReason })) {
          return { status: 'deferred', taskId };
        }
        continue;
      case 'active': {
        const endPatch = { ...ended, outcome, endedBy: ender, endReason, lockedUntil: now + core.opts.lockMs };
        const ending: LeaseRecord = { ...lease, state: LEASE_TRANSITIONS.end.to, ...ended, outcome, endedBy: ender, endReason };
        const marked = await endAndStartRevoking(core, lease, endPatch, found.credentials, now);
        if (marked) return revokeLease(core, ending, marked, true);
        if (await transitionLease(ledger, 'end', lease, endPatch)) return revokeLease(core, ending, found.credentials);
        continue;
      }
      case 'ending':
        if ((lease.lockedUntil ?? 0) >= now) return { status: 'in-progress', taskId };
        if (await transitionLease(ledger, 'takeOverEnding', lease, { lockedUntil: now + core.opts.lockMs }, { lockedBefore: now })) {
          return revokeLease(core, lease, found.credentials);
        }
        continue;
    }
  }
  return { status: 'in-progress', taskId };
}

/**
 * The common end in one ledger request: the lease goes `ending` and every unfinished credential
 * `revoking` (its write-ahead mark before the target is touched), all or none. Undefined when the
 * ledger has no transactions or a condition failed: nothing was written, and the end goes one
 * write at a time, deciding every race as before. Otherwise, the credentials as now stored.
 */
async function endAndStartRevoking(
  core: Core,
  lease: LeaseRecord,
  endPatch: Partial<LeaseRecord>,
  credentials: CredentialRecord[],
  now: number,
): Promise<CredentialRecord[] | undefined> {
  const { ledger } = core.deps;
  if (!ledger.transact) return undefined;
  const marks = new Map<CredentialRecord, Partial<CredentialRecord>>();
  for (const c of credentials) {
    if (isFinishedCredential(c.state)) continue;
    marks.set(c, {
      endedAt: c.endedAt ?? endPatch.endedAt ?? now,
      revokeStartedAt: c.revokeStartedAt ?? now,
      // Due again after our lock, should this worker die mid-way (as revokeAndVerify's own mark).
      nextCheckAt: now + core.opts.lockMs,
    });
  }
  const steps = [leaseStep('end', lease, endPatch), ...[...marks].map(([c, patch]) => credentialStep('startRevoking', c, patch))];
  if (!(await transitionTogether(ledger, steps))) return undefined;
  return credentials.map((c) => {
    const patch = marks.get(c);
    return patch ? { ...c, ...patch, state: CREDENTIAL_TRANSITIONS.startRevoking.to } : c;
  });
}

/**
 * Revokes and verifies every credential of an `ending` lease we hold the lock of. `marked`: the
 * unfinished credentials are already `revoking` in the ledger (endAndStartRevoking wrote them).
 */
export async function revokeLease(core: Core, lease: LeaseRecord, credentials: CredentialRecord[], marked = false): Promise<EndResult> {
  const { ledger, clock } = core.deps;
  const endedAt = lease.endedAt ?? clock.now();
  const done = await Promise.all(
    credentials.map((c) =>
      isFinishedCredential(c.state) ? c : revokeAndVerify(core, c, c.endedAt ?? endedAt, core.opts.verifyDeadlineMs, marked),
    ),
  );
  const open = done.filter((c) => !isFinishedCredential(c.state));
  const now = clock.now();
  if (open.length) {
    const nextCheck = Math.min(...open.map((c) => c.nextCheckAt ?? now + core.opts.verifyMaxDelayMs));
    await transitionLease(ledger, 'awaitProof', lease, { lockedUntil: nextCheck });
    return { status: 'open-debt', taskId: lease.taskId, credentials: done };
  }
  if (!(await transitionLease(ledger, 'close', lease, { closedAt: now, lockedUntil: undefined }))) {
    // Another worker closed it and announced it, unless the write was ours and only its
    // response was lost: our own closedAt tells.
    const current = await ledger.getLease(lease.taskId);
    if (!(current?.lease.state === 'closed' && current.lease.closedAt === now)) {
      return { status: 'duplicate', taskId: lease.taskId, state: current?.lease.state ?? 'closed' };
    }
  }
  const closed: LeaseRecord = { ...lease, state: LEASE_TRANSITIONS.close.to, closedAt: now, nextCheckAt: undefined };
  await announceRevoked(core, lease, endedAt, done);
  core.deps.observer?.ended?.(closed);
  core.log.info('lease closed', { taskId: lease.taskId, credentials: done.length, trustDebtMs: done.map((c) => c.trustDebtMs) });
  return { status: 'closed', taskId: lease.taskId, credentials: done };
}
