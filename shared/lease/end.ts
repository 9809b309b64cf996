import { TaskEndedSchema } from '../events/schemas.ts';
import type { TaskEnded } from '../events/schemas.ts';
import { parseDetail } from '../events/parse.ts';
import { announceEndRejected, announceInvalid, announceRevoked } from './announce.ts';
import type { Core, EndResult } from './context.ts';
import { isReopenable } from './denials.ts';
import { DenialError } from './errors.ts';
import type { CredentialRecord, EndOutcome, LeaseRecord } from './records.ts';
import { isFinishedCredential, LEASE_TRANSITIONS, newLease, transitionLease } from './transitions.ts';
import { revokeAndVerify } from './verify.ts';

/**
 * Answers a `Task Ended` detail. Its SVID must verify (like a start's, but without the start's
 * single-use claim: an end may reuse a still-valid SVID) and name the lease's workload or an
 * engine its rule lists in `endedBy`; otherwise nothing changes and the end is announced as
 * refused (`Lease Denied`, request `end`). Throws InvalidEventError for a malformed detail, after
 * announcing it the same way.
 */
export async function taskEnded(core: Core, raw: unknown): Promise<EndResult> {
  let detail: TaskEnded;
  try {
    detail = parseDetail(TaskEndedSchema, raw, 'Task Ended');
  } catch (err) {
    await announceInvalid(core, raw, err, 'end');
    throw err;
  }
  let ender: string;
  try {
    ender = (await core.deps.identity.verify(detail.svid)).spiffeId;
  } catch (err) {
    // A trust bundle that cannot be fetched is not the sender's fault: thrown, so the end is retried.
    if (!(err instanceof DenialError)) throw err;
    const message = `the Task Ended SVID was refused (${err.denial}: ${err.message}); nothing was ended or revoked`;
    return rejectEnd(core, detail.taskId, undefined, 'end-unauthenticated', message);
  }
  return endLease(core, detail.taskId, detail.outcome, core.deps.clock.now(), ender);
}

/** May the verified `ender` end `workload`'s tasks? The workload itself, or an engine its rule allows. */
export function mayEnd(core: Core, ender: string, workload: string): { allowed: true } | { allowed: false; message: string } {
  return ender === workload ? { allowed: true } : core.deps.policy.mayEnd(ender, workload);
}

async function rejectEnd(
  core: Core,
  taskId: string,
  ender: string | undefined,
  code: 'end-unauthenticated' | 'end-not-allowed',
  message: string,
): Promise<EndResult> {
  await announceEndRejected(core, taskId, ender, code, message);
  return { status: 'rejected', taskId, code, message };
}

/**
 * Ends a lease: from an authenticated `Task Ended` (`ender` is its verified SPIFFE ID), or from
 * the broker itself (the reaper at expiry, with no ender). Only an authenticated end leaves a
 * tombstone, bound to its ender.
 */
export async function endLease(core: Core, taskId: string, outcome: EndOutcome, endedAt: number, ender?: string): Promise<EndResult> {
  const { ledger, clock } = core.deps;
  // Each lost race re-reads and decides again; five rounds is far more than one event's deliveries.
  for (let attempt = 0; attempt < 5; attempt++) {
    const found = await ledger.getLease(taskId);
    const now = clock.now();
    if (!found) {
      if (ender === undefined) return { status: 'duplicate', taskId, state: 'closed' };
      const tombstone = newLease('tombstone', {
        taskId,
        tombstone: true,
        endedBy: ender,
        grants: [],
        requestedAt: now,
        endedAt,
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
    if (ender !== undefined && lease.workload !== undefined && !lease.tombstone) {
      const decision = mayEnd(core, ender, lease.workload);
      if (!decision.allowed) return rejectEnd(core, taskId, ender, 'end-not-allowed', `${decision.message}; nothing was ended or revoked`);
    }
    switch (lease.state) {
      case 'closed':
        return { status: 'duplicate', taskId, state: lease.state };
      case 'denied':
        // A reopenable denial could still become a lease: tombstone it, so a later start is refused.
        if (isReopenable(found) && ender !== undefined) {
          const guard = { denialCode: lease.denial?.code, notTombstone: true };
          if (await transitionLease(ledger, 'tombstoneDenial', lease, { tombstone: true, endedBy: ender, endedAt, outcome }, guard)) {
            return { status: 'tombstoned', taskId };
          }
          continue;
        }
        return { status: 'duplicate', taskId, state: lease.state };
      case 'issuing':
        if (lease.endRequested) return { status: 'duplicate', taskId, state: lease.state };
        if (await transitionLease(ledger, 'requestEnd', lease, { endRequested: true, endedAt, outcome, endedBy: ender })) {
          return { status: 'deferred', taskId };
        }
        continue;
      case 'active':
        if (await transitionLease(ledger, 'end', lease, { endedAt, outcome, endedBy: ender, lockedUntil: now + core.opts.lockMs })) {
          return revokeLease(core, { ...lease, state: LEASE_TRANSITIONS.end.to, endedAt, outcome, endedBy: ender }, found.credentials);
        }
        continue;
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

/** Revokes and verifies every credential of an `ending` lease we hold the lock of. */
export async function revokeLease(core: Core, lease: LeaseRecord, credentials: CredentialRecord[]): Promise<EndResult> {
  const { ledger, clock } = core.deps;
  const endedAt = lease.endedAt ?? clock.now();
  const done = await Promise.all(
    credentials.map((c) => (isFinishedCredential(c.state) ? c : revokeAndVerify(core, c, c.endedAt ?? endedAt))),
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
