import type { DenialCode, TaskStarted } from '../events/schemas.ts';
import { announceDenied } from './announce.ts';
import type { Core, StartResult } from './context.ts';
import type { LeaseWithCredentials } from './records.ts';
import { newLease, transitionLease } from './transitions.ts';

/** Denials a later, corrected request may overturn (never a tombstone, never one that issued anything). */
export const REOPENABLE_DENIALS: ReadonlySet<DenialCode> = new Set<DenialCode>([
  'svid-invalid',
  'svid-expired',
  'svid-untrusted',
  'svid-replayed',
  'policy-no-rule',
  'policy-grant-not-allowed',
  'policy-duration-exceeded',
  'policy-initiator-not-allowed',
  'unknown-target',
  // Unlocking the workload lets the same task id start.
  'workload-locked',
]);

export function isReopenable(found: LeaseWithCredentials): boolean {
  const { lease, credentials } = found;
  return (
    lease.state === 'denied' &&
    !lease.tombstone &&
    credentials.length === 0 &&
    lease.denial !== undefined &&
    REOPENABLE_DENIALS.has(lease.denial.code)
  );
}

/** Refuses a `Task Started`: records the denial (never over a lease) and announces it. */
export async function deny(
  core: Core,
  detail: Pick<TaskStarted, 'taskId' | 'grants' | 'initiator' | 'workflow' | 'taskToken'>,
  workload: string | undefined,
  code: DenialCode,
  message: string,
  rule?: string,
): Promise<StartResult> {
  const { ledger, clock } = core.deps;
  const now = clock.now();
  const created = await ledger.createLease(
    newLease('deny', {
      taskId: detail.taskId,
      workload,
      initiator: detail.initiator,
      workflow: detail.workflow,
      rule,
      grants: detail.grants,
      requestedAt: now,
      denial: { code, message },
      closedAt: now,
    }),
  );
  if (!created) {
    // The task already has a record: never overwrite a lease; an earlier denial gets the latest reason.
    const existing = await ledger.getLease(detail.taskId);
    if (existing && existing.lease.state !== 'denied') return { status: 'duplicate', taskId: detail.taskId, state: existing.lease.state };
    if (existing && isReopenable(existing)) {
      await transitionLease(ledger, 'redeny', existing.lease, {
        denial: { code, message },
        workload,
        initiator: detail.initiator,
        workflow: detail.workflow,
        rule,
        grants: detail.grants,
      });
    }
  }
  await announceDenied(core, detail, workload, code, message);
  return { status: 'denied', taskId: detail.taskId, code, message };
}
