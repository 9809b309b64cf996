import { announceDenied } from './announce.ts';
import type { Core } from './context.ts';
import type { LeaseRecord } from './records.ts';
import { isFinishedCredential, transitionLease } from './transitions.ts';
import { revokeAndVerify } from './verify.ts';

/** Revokes everything a failed issue left behind and records the lease as denied (or ending, while debt is open). */
export async function rollBack(core: Core, lease: LeaseRecord, message: string): Promise<void> {
  const { ledger, clock } = core.deps;
  const now = clock.now();
  const current = await ledger.getLease(lease.taskId);
  const creds = current?.credentials ?? [];
  const done = await Promise.all(creds.map((c) => (isFinishedCredential(c.state) ? c : revokeAndVerify(core, c, c.endedAt ?? now))));
  const allVerified = done.every((c) => isFinishedCredential(c.state));
  const ended = {
    endedAt: now,
    outcome: 'issue-failed' as const,
    denial: { code: 'issue-failed' as const, message },
    taskToken: undefined,
  };
  await (allVerified
    ? transitionLease(ledger, 'rollBackDenied', lease, { ...ended, lockedUntil: undefined, closedAt: now })
    : transitionLease(ledger, 'rollBackOpen', lease, { ...ended, lockedUntil: now + core.opts.lockMs, closedAt: undefined }));
  await announceDenied(
    core,
    { taskId: lease.taskId, grants: lease.grants, initiator: lease.initiator, taskToken: lease.taskToken },
    lease.workload,
    'issue-failed',
    message,
  );
}
