import { createHash } from 'node:crypto';
import { TaskStartedSchema } from '../events/schemas.ts';
import type { DenialCode, TaskStarted } from '../events/schemas.ts';
import { parseDetail } from '../events/parse.ts';
import { announceDenied, announceInvalid, announceIssued, answerTaskToken } from './announce.ts';
import type { Core, StartResult } from './context.ts';
import { deny, isReopenable } from './denials.ts';
import { mayEnd } from './end.ts';
import { DenialError, describeError } from './errors.ts';
import { issueGrants } from './issue.ts';
import type { VerifiedWorkload } from './ports.ts';
import type { LeaseRecord } from './records.ts';
import { rollBack } from './rollback.ts';
import { newLease, transitionLease } from './transitions.ts';

/** A task token's claim outlives the lease it was bound to, by this much. */
const TOKEN_CLAIM_MARGIN_MS = 24 * 3600_000;

/** The ledger key a task token is bound under (a hash: the token itself is never stored twice). */
export const taskTokenClaim = (taskToken: string): string => `token:${createHash('sha256').update(taskToken).digest('base64url')}`;

/**
 * Answers a `Task Started` detail. Throws InvalidEventError for a malformed detail (after
 * publishing `Lease Denied` when a task id can be read) so a queue can dead-letter it.
 */
export async function taskStarted(core: Core, raw: unknown, attempt = 0): Promise<StartResult> {
  const { ledger, clock, identity, policy, targets } = core.deps;
  const receivedAt = clock.now();
  let detail: TaskStarted;
  try {
    detail = parseDetail(TaskStartedSchema, raw, 'Task Started');
  } catch (err) {
    // The reason is bounded where it is made (describeIssues), whatever the input's size.
    await announceInvalid(core, raw, err);
    throw err;
  }
  const { taskId } = detail;

  let workload: VerifiedWorkload;
  try {
    workload = await identity.verify(detail.svid);
  } catch (err) {
    if (err instanceof DenialError) return deny(core, detail, undefined, err.denial, err.message);
    throw err;
  }

  // Bound before anything can answer it (a denial below answers it too): a Step Functions task
  // token belongs to the first task whose verified request carries it, and is never answered for
  // another. Only the first claim wins, so the token is still a bearer value until then.
  if (detail.taskToken !== undefined) {
    const until = receivedAt + detail.maxDurationSeconds * 1000 + TOKEN_CLAIM_MARGIN_MS;
    if (!(await ledger.claimSvid(taskTokenClaim(detail.taskToken), taskId, until))) {
      const { taskToken: _theirs, ...untouched } = detail;
      const message = 'this Step Functions task token already belongs to another task; it was not answered, and nothing was issued';
      return deny(core, untouched, workload.spiffeId, 'task-token-reused', message);
    }
  }

  const locked = await core.deps.locks?.get(workload.spiffeId);
  if (locked) {
    const message = `workload ${workload.spiffeId} is locked by ${locked.by} (${locked.reason}); an operator must run tasklease unlock before it gets new credentials`;
    return deny(core, detail, workload.spiffeId, 'workload-locked', message);
  }

  const existing = await ledger.getLease(taskId);
  // A denial for a bad SVID or a policy refusal does not burn the task id: otherwise anyone who
  // can put a forged event on the bus first could block a real task, and an engine could never
  // retry with a fresh SVID. Only a request that passes every check below reopens it. Likewise a
  // tombstone left by an ender who may not end this workload's tasks binds nothing: the start
  // proceeds over it.
  const overturn = existing !== undefined && existing.lease.tombstone === true && !tombstoneBinds(core, existing.lease, workload.spiffeId);
  const reopen = existing !== undefined && !overturn && isReopenable(existing);
  if (existing && !reopen && !overturn) return onExistingLease(core, existing.lease, detail, workload);
  if (overturn) {
    core.log.warn('tombstone left by an ender who may not end this workload: the start proceeds over it', {
      taskId,
      workload: workload.spiffeId,
      endedBy: existing.lease.endedBy,
    });
  }

  const decision = policy.evaluate({
    workload: workload.spiffeId,
    grants: detail.grants,
    durationSeconds: detail.maxDurationSeconds,
    initiator: detail.initiator,
    ...(detail.initiator !== undefined ? { initiatorProof: 'asserted' as const } : {}),
  });
  if (!decision.allowed) {
    // Over a foreign tombstone there is no denial to record (deny never overwrites a record): announce only.
    if (overturn) {
      await announceDenied(core, detail, workload.spiffeId, decision.code, decision.message);
      return { status: 'denied', taskId, code: decision.code, message: decision.message };
    }
    return deny(core, detail, workload.spiffeId, decision.code, decision.message, decision.rule);
  }
  const refuse = async (code: DenialCode, message: string): Promise<StartResult> => {
    if (!overturn) return deny(core, detail, workload.spiffeId, code, message);
    await announceDenied(core, detail, workload.spiffeId, code, message);
    return { status: 'denied', taskId, code, message };
  };
  const unknown = detail.grants.filter((g) => !targets.get(g.target));
  if (unknown.length) {
    return refuse('unknown-target', `no driver is configured for target(s) ${unknown.map((g) => g.target).join(', ')}`);
  }

  if (!(await ledger.claimSvid(workload.replayKey, taskId, workload.expiresAt))) {
    return refuse('svid-replayed', 'this JWT-SVID was already used to open a lease for another task; mint a fresh SVID per task');
  }

  const now = clock.now();
  const lease = newLease('open', {
    taskId,
    workload: workload.spiffeId,
    initiator: detail.initiator,
    ...(detail.initiator !== undefined ? { initiatorProof: 'asserted' as const } : {}),
    workflow: detail.workflow,
    rule: decision.rule,
    grants: detail.grants,
    requestedAt: receivedAt,
    expiresAt: now + detail.maxDurationSeconds * 1000,
    lockedUntil: now + core.opts.lockMs,
    taskToken: detail.taskToken,
  });
  const { taskId: _key, ...fields } = lease;
  const cleared = {
    denial: undefined,
    closedAt: undefined,
    tombstone: undefined,
    endedBy: undefined,
    endedAt: undefined,
    outcome: undefined,
  };
  const opened = overturn
    ? // Conditional on the tombstone's denial as read: a real lease made of it meanwhile has none.
      await transitionLease(
        ledger,
        'overturnTombstone',
        existing.lease,
        { ...fields, ...cleared },
        { denialCode: existing.lease.denial?.code },
      )
    : reopen
      ? // Conditional on the very denial we judged reopenable: a Task Ended may tombstone it meanwhile.
        await transitionLease(
          ledger,
          'reopen',
          existing.lease,
          { ...fields, denial: undefined, closedAt: undefined },
          {
            denialCode: existing.lease.denial?.code,
            notTombstone: true,
          },
        )
      : await ledger.createLease(lease);
  if (!opened) {
    const raced = await ledger.getLease(taskId);
    // A tombstone that does not bind us landed meanwhile: decide again over it (bounded).
    if (raced?.lease.tombstone && !tombstoneBinds(core, raced.lease, workload.spiffeId) && attempt < 3) {
      return taskStarted(core, raw, attempt + 1);
    }
    return raced ? onExistingLease(core, raced.lease, detail, workload) : { status: 'in-progress', taskId };
  }
  // A reopenable denial has no credentials (isReopenable), so either way there is nothing to resume.
  return issueGrants(core, lease, decision.readerPrincipal, receivedAt, true);
}

/**
 * Does this tombstone refuse a start of `workload`? Only if its verified ender may end that
 * workload's tasks (the workload itself, or an engine its rule lists in endedBy). A tombstone
 * without an ender predates authenticated ends and binds nobody.
 */
function tombstoneBinds(core: Core, lease: LeaseRecord, workload: string): boolean {
  return lease.endedBy !== undefined && mayEnd(core, lease.endedBy, workload).allowed;
}

/** A `Task Started` for a task the ledger already knows: deny, resume, re-announce or ignore. */
async function onExistingLease(core: Core, lease: LeaseRecord, detail: TaskStarted, workload: VerifiedWorkload): Promise<StartResult> {
  const { ledger, clock, policy } = core.deps;
  if (lease.tombstone) {
    // Only a tombstone that binds this workload reaches here (taskStarted overturns the others).
    // A redelivery of a start already refused is a duplicate.
    if (lease.denial?.code === 'task-already-ended' && lease.workload === workload.spiffeId) {
      return { status: 'duplicate', taskId: lease.taskId, state: lease.state };
    }
    const message = `task ${lease.taskId} already ended (${lease.outcome ?? 'unknown outcome'}) before it started; nothing is issued for it`;
    await transitionLease(ledger, 'refuseLateStart', lease, {
      denial: { code: 'task-already-ended', message },
      workload: workload.spiffeId,
      initiator: detail.initiator,
      ...(detail.initiator !== undefined ? { initiatorProof: 'asserted' as const } : {}),
      workflow: detail.workflow,
      grants: detail.grants,
    });
    await announceDenied(core, detail, workload.spiffeId, 'task-already-ended', message);
    return { status: 'denied', taskId: lease.taskId, code: 'task-already-ended', message };
  }
  // A stale `issuing` lease means its worker died; a redelivery of *its* start finishes the job.
  // Only the lease's own workload may, with an SVID not used for another task: anyone else's
  // valid SVID must not complete (and so become the reader of) someone else's credentials.
  if (lease.state === 'issuing' && (lease.lockedUntil ?? 0) < clock.now() && workload.spiffeId === lease.workload) {
    const now = clock.now();
    if (
      (await ledger.claimSvid(workload.replayKey, lease.taskId, workload.expiresAt)) &&
      (await transitionLease(ledger, 'takeOverIssuing', lease, { lockedUntil: now + core.opts.lockMs }, { lockedBefore: now }))
    ) {
      const decision = policy.evaluate({
        workload: lease.workload,
        grants: lease.grants,
        durationSeconds: Math.max(1, Math.round(((lease.expiresAt ?? now) - lease.requestedAt) / 1000)),
        initiator: lease.initiator,
      });
      if (!decision.allowed) {
        // The policy changed while the lease was stalled: it no longer holds, so nothing is issued.
        await rollBack(core, lease, `issuing resumed after an interruption, but ${decision.message}`);
        return { status: 'denied', taskId: lease.taskId, code: decision.code, message: decision.message };
      }
      return issueGrants(core, lease, decision.readerPrincipal, lease.requestedAt);
    }
  }
  if (lease.state === 'issuing') return { status: 'in-progress', taskId: lease.taskId };
  if (lease.state === 'active' && !lease.endRequested && lease.workload === workload.spiffeId && (lease.expiresAt ?? 0) > clock.now()) {
    // A worker that died between activation and its announcement left a lease nobody was told
    // about; the redelivered start announces it (again: Lease Issued is at-least-once).
    const found = await ledger.getLease(lease.taskId);
    if (found?.lease.state === 'active' && !found.lease.endRequested) {
      await announceIssued(core, found.lease, found.credentials, undefined);
      if (detail.taskToken) {
        // The first answer may have gone through; a second one for the same token is refused.
        await answerTaskToken(core, found.lease, found.credentials, detail.taskToken).catch((err: unknown) =>
          core.log.warn('task token already answered or gone', { taskId: lease.taskId, error: describeError(err) }),
        );
      }
    }
  }
  return { status: 'duplicate', taskId: lease.taskId, state: lease.state };
}
