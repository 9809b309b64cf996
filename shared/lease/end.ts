import { TaskEndedSchema } from '../events/schemas.ts';
import { parseDetail } from '../events/parse.ts';
import { announceRevoked } from './announce.ts';
import type { Core, EndResult } from './context.ts';
import { isReopenable } from './denials.ts';
import type { CredentialRecord, EndOutcome, LeaseRecord } from './records.ts';
import { isFinishedCredential, LEASE_TRANSITIONS, newLease, transitionLease } from './transitions.ts';
import { revokeAndVerify } from './verify.ts';

/** Answers a `Task Ended` detail; throws InvalidEventError for a malformed one. */
export async function taskEnded(core: Core, raw: unknown): Promise<EndResult> {
  const detail = parseDetail(TaskEndedSchema, raw, 'Task Ended');
  return endLease(core, detail.taskId, detail.outcome, core.deps.clock.now());
}

/** Ends a lease (from `Task Ended`, or from the reaper with outcome `expired`). */
export async function endLease(core: Core, taskId: string, outcome: EndOutcome, endedAt: number): Promise<EndResult> {
  const { ledger, clock } = core.deps;
  // Each lost race re-reads and decides again; five rounds is far more than one event's deliveries.
  for (let attempt = 0; attempt < 5; attempt++) {
    const found = await ledger.getLease(taskId);
    const now = clock.now();
    if (!found) {
      const tombstone = newLease('tombstone', { taskId, tombstone: true, grants: [], requestedAt: now, endedAt, outcome, closedAt: now });
      if (await ledger.createLease(tombstone)) {
        core.log.warn('Task Ended before Task Started: tombstone left, a late start will be denied', { taskId, outcome });
        return { status: 'tombstoned', taskId };
      }
      continue;
    }
    const { lease } = found;
    switch (lease.state) {
      case 'closed':
        return { status: 'duplicate', taskId, state: lease.state };
      case 'denied':
        // A reopenable denial could still become a lease: tombstone it, so a later start is refused.
        if (isReopenable(found)) {
          const guard = { denialCode: lease.denial?.code, notTombstone: true };
          if (await transitionLease(ledger, 'tombstoneDenial', lease, { tombstone: true, endedAt, outcome }, guard)) {
            return { status: 'tombstoned', taskId };
          }
          continue;
        }
        return { status: 'duplicate', taskId, state: lease.state };
      case 'issuing':
        if (lease.endRequested) return { status: 'duplicate', taskId, state: lease.state };
        if (await transitionLease(ledger, 'requestEnd', lease, { endRequested: true, endedAt, outcome })) {
          return { status: 'deferred', taskId };
        }
        continue;
      case 'active':
        if (await transitionLease(ledger, 'end', lease, { endedAt, outcome, lockedUntil: now + core.opts.lockMs })) {
          return revokeLease(core, { ...lease, state: LEASE_TRANSITIONS.end.to, endedAt, outcome }, found.credentials);
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
