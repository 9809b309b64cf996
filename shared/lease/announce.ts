import { DETAIL_TYPES, grantKey } from '../events/schemas.ts';
import type { DenialCode, TaskStarted } from '../events/schemas.ts';
import type { Core } from './context.ts';
import { describeError, InvalidEventError } from './errors.ts';
import type { CredentialRecord, LeaseRecord } from './records.ts';
import { debtSplit, openDebt } from './trust-debt.ts';

/*
 * Every output event of the core (Lease Issued, Lease Denied, Lease Revoked, Revocation Failed)
 * and every answer to a Step Functions task token is built here, from ledger records: none of them
 * carries secret material, only secret names.
 */

const iso = (ms: number) => new Date(ms).toISOString();

/** Lease Issued (and the task token's answer). At-least-once: a redelivered start may repeat it. */
export async function announceIssued(
  core: Core,
  lease: LeaseRecord,
  credentials: CredentialRecord[],
  taskToken: string | undefined,
): Promise<void> {
  await core.deps.events.publish({
    detailType: DETAIL_TYPES.leaseIssued,
    detail: {
      taskId: lease.taskId,
      workload: lease.workload as string,
      ...(lease.initiator ? { initiator: lease.initiator, initiatorProof: lease.initiatorProof ?? 'asserted' } : {}),
      ...(lease.workflow ? { workflow: lease.workflow } : {}),
      rule: lease.rule ?? '',
      issuedAt: iso(lease.issuedAt as number),
      expiresAt: iso(lease.expiresAt as number),
      credentials: credentials.map((c) => ({
        grant: c.grant,
        kind: c.kind,
        secretName: c.secretName as string,
        ...(c.secretArn ? { secretArn: c.secretArn } : {}),
        naturalExpiry: iso(c.naturalExpiry as number),
      })),
    },
  });
  if (taskToken) await answerTaskToken(core, lease, credentials, taskToken);
}

/** The task token's success answer: where the workload finds each secret. */
export async function answerTaskToken(core: Core, lease: LeaseRecord, credentials: CredentialRecord[], taskToken: string): Promise<void> {
  await core.deps.callback?.success(taskToken, {
    taskId: lease.taskId,
    expiresAt: iso(lease.expiresAt as number),
    secrets: credentials.map((c) => ({ grant: grantKey(c.grant), secretName: c.secretName, secretArn: c.secretArn })),
  });
}

/**
 * Lease Denied, the observer and log line that go with it, and the task token's failure answer,
 * only when the requester's SVID verified (`workload` set): an unverified request never touches
 * a task token, which may be anyone's. Callers pass the verified workload only for a request
 * that is the lease's own (a start for someone else's lease is a duplicate, never denied here).
 */
export async function announceDenied(
  core: Core,
  detail: Pick<TaskStarted, 'taskId' | 'grants' | 'initiator' | 'taskToken'>,
  workload: string | undefined,
  code: DenialCode,
  message: string,
): Promise<void> {
  core.deps.observer?.denied?.(code, { taskId: detail.taskId, workload });
  core.log.warn('lease denied', { taskId: detail.taskId, workload, code, reason: message });
  await core.deps.events.publish({
    detailType: DETAIL_TYPES.leaseDenied,
    detail: {
      taskId: detail.taskId,
      ...(workload ? { workload } : {}),
      ...(detail.initiator ? { initiator: detail.initiator, initiatorProof: 'asserted' as const } : {}),
      grants: detail.grants,
      reason: { code, message },
      deniedAt: iso(core.deps.clock.now()),
    },
  });
  if (detail.taskToken && workload !== undefined && core.deps.callback) await core.deps.callback.failure(detail.taskToken, code, message);
}

/**
 * A refused `Task Ended`: Lease Denied with `request: 'end'` (nothing was ended or revoked), a log
 * line and the observer. `ender` is the verified sender, when its SVID verified at all.
 */
export async function announceEndRejected(
  core: Core,
  taskId: string,
  ender: string | undefined,
  code: 'end-unauthenticated' | 'end-not-allowed' | 'end-svid-reused',
  message: string,
): Promise<void> {
  core.deps.observer?.denied?.(code, { taskId, workload: ender });
  core.log.warn('Task Ended rejected', { taskId, ender, code, reason: message });
  await core.deps.events.publish({
    detailType: DETAIL_TYPES.leaseDenied,
    detail: {
      taskId,
      ...(ender ? { workload: ender } : {}),
      request: 'end',
      grants: [],
      reason: { code, message },
      deniedAt: iso(core.deps.clock.now()),
    },
  });
}

/** Lease Denied for a detail that failed validation, under a task id only when it is readable. */
export async function announceInvalid(core: Core, raw: unknown, err: unknown, request: 'start' | 'end' = 'start'): Promise<void> {
  const message = err instanceof InvalidEventError ? err.message : describeError(err);
  const candidate = (raw as { taskId?: unknown } | null)?.taskId;
  const taskId = typeof candidate === 'string' && candidate.length <= 128 && /^[\x20-\x7e]*$/.test(candidate) ? candidate : '(unreadable)';
  core.deps.observer?.denied?.('invalid-event', { taskId });
  core.log.warn(`invalid ${request === 'end' ? 'Task Ended' : 'Task Started'} rejected`, { taskId, reason: message });
  await core.deps.events.publish({
    detailType: DETAIL_TYPES.leaseDenied,
    detail: {
      taskId,
      ...(request === 'end' ? { request } : {}),
      grants: [],
      reason: { code: 'invalid-event', message },
      deniedAt: iso(core.deps.clock.now()),
    },
  });
}

/** Lease Revoked: every credential of a closed lease, each with its proven trust debt. */
export async function announceRevoked(core: Core, lease: LeaseRecord, endedAt: number, credentials: CredentialRecord[]): Promise<void> {
  await core.deps.events.publish({
    detailType: DETAIL_TYPES.leaseRevoked,
    detail: {
      taskId: lease.taskId,
      workload: lease.workload ?? '',
      outcome: lease.outcome === 'issue-failed' || lease.outcome === undefined ? 'failed' : lease.outcome,
      endedAt: iso(endedAt),
      ...(lease.endedAtSource ? { endedAtSource: lease.endedAtSource } : {}),
      ...(lease.endedAtClamped ? { endedAtClamped: true } : {}),
      ...(lease.endedBy ? { endedBy: lease.endedBy } : {}),
      credentials: credentials.map((c) => {
        // The split from the credential's instants (trust-debt.ts): one arithmetic everywhere.
        const split = debtSplit(c);
        return {
          grant: c.grant,
          kind: c.kind,
          state: c.state,
          verified: c.state === 'verified',
          verifyAttempts: c.verifyAttempts,
          trustDebtMs: c.trustDebtMs ?? null,
          avoidedDebtMs: c.avoidedDebtMs ?? null,
          pipelineMs: split.pipelineMs ?? null,
          revokeMs: split.revokeMs ?? null,
          proofMs: split.proofMs ?? null,
          exposureMs: split.exposureMs ?? null,
        };
      }),
    },
  });
}

/** Revocation Failed: a credential not yet proven rejected, with the debt it has run up so far. */
export async function announceRevocationFailed(
  core: Core,
  cred: CredentialRecord & { state: 'revoking' | 'still-valid' },
  error: string,
  now: number,
): Promise<void> {
  await core.deps.events.publish({
    detailType: DETAIL_TYPES.revocationFailed,
    detail: {
      taskId: cred.taskId,
      workload: cred.workload,
      grant: cred.grant,
      kind: cred.kind,
      state: cred.state,
      verifyAttempts: cred.verifyAttempts,
      openDebtMs: openDebt(cred, now) ?? 0,
      lastError: error,
    },
  });
}
