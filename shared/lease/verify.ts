import { grantKey } from '../events/schemas.ts';
import { announceRevocationFailed } from './announce.ts';
import { secretNameFor } from './context.ts';
import type { Core } from './context.ts';
import { describeError } from './errors.ts';
import type { VerifyResult } from './ports.ts';
import type { CredentialRecord } from './records.ts';
import { CREDENTIAL_TRANSITIONS, transitionCredential } from './transitions.ts';
import type { CredentialTransitionName } from './transitions.ts';
import { avoidedDebtMs, debtSplit, openDebt } from './trust-debt.ts';

/**
 * Revokes one credential on its target and retries verification with backoff until the
 * target rejects it or this call's deadline passes. Never gives up for good: an unproven
 * credential keeps a `nextCheckAt` for the reaper (and the re-verify scheduler).
 */
export async function revokeAndVerify(
  core: Core,
  cred: CredentialRecord,
  endedAt: number,
  deadlineMs = core.opts.verifyDeadlineMs,
  /** The `revoking` mark is already stored (written with the lease's end in one transaction). */
  marked = false,
): Promise<CredentialRecord> {
  const { ledger, clock, targets, secrets, observer } = core.deps;
  const key = grantKey(cred.grant);
  const driver = targets.get(cred.target);
  const start = clock.now();
  let current: CredentialRecord = {
    ...cred,
    state: CREDENTIAL_TRANSITIONS.startRevoking.to,
    endedAt: cred.endedAt ?? endedAt,
    revokeStartedAt: cred.revokeStartedAt ?? start,
  };
  // Due again after our lock, should this worker die mid-way.
  const dueIfAbandoned = () => clock.now() + core.opts.lockMs;
  if (!marked) {
    await landCredential(core, 'startRevoking', cred, {
      endedAt: current.endedAt,
      revokeStartedAt: current.revokeStartedAt,
      nextCheckAt: dueIfAbandoned(),
    });
  }
  if (!driver) return recordOpen(core, current, `no driver configured for target ${cred.target}`, 'revoking');

  const ctx = {
    taskId: cred.taskId,
    grant: cred.grant,
    externalId: cred.externalId,
    metadata: cred.metadata,
    naturalExpiry: cred.naturalExpiry,
    intentAt: cred.intentAt,
  };
  try {
    await driver.revoke(ctx);
  } catch (err) {
    // A failed revoke is an attempt too: the count drives the backoff and shows the debt's history.
    return recordOpen(core, { ...current, verifyAttempts: current.verifyAttempts + 1 }, describeError(err), 'revoking');
  }
  // Recorded with the next write (an attempt that did not prove rejection, or the verification):
  // a crash before it only means the idempotent revoke runs again.
  if (current.revokedAt === undefined) current = { ...current, revokedAt: clock.now() };

  // The old secret, if the store still has it, lets the driver prove rejection by trying it.
  // An intent has no secretName yet, but its issue may have delivered one: names are derived.
  const secretName = cred.secretName ?? secretNameFor(cred.taskId, cred.grant);
  const secret = await secrets.get(secretName).catch(() => undefined);
  let delay = core.opts.verifyInitialDelayMs;
  let last: 'still-valid' | 'inconclusive' = 'inconclusive';
  let lastError: string | undefined;
  for (;;) {
    let result: VerifyResult | undefined;
    try {
      result = await driver.verify({ ...ctx, secret });
      lastError = undefined;
    } catch (err) {
      lastError = describeError(err);
    }
    current = { ...current, verifyAttempts: current.verifyAttempts + 1 };
    // The proving attempt is recorded by the `verified` write itself; every other one now.
    if (result === 'rejected') break;
    await transitionCredential(ledger, 'recordAttempt', cred, {
      verifyAttempts: current.verifyAttempts,
      revokedAt: current.revokedAt,
      lastError,
      nextCheckAt: dueIfAbandoned(),
    });
    if (result === 'still-valid') {
      last = 'still-valid';
      observer?.stillValid?.(current);
      core.log.warn('revoked credential still accepted by its target; retrying', {
        taskId: cred.taskId,
        grant: key,
        attempts: current.verifyAttempts,
      });
    } else if (result === 'inconclusive') {
      last = 'inconclusive';
    }
    if (clock.now() - start + delay > deadlineMs) {
      return recordOpen(
        core,
        current,
        lastError ?? `verification ${last} after ${current.verifyAttempts} attempts`,
        last === 'still-valid' ? 'still-valid' : 'revoking',
      );
    }
    await clock.sleep(delay);
    delay = Math.min(delay * 2, core.opts.verifyMaxDelayMs);
  }

  await secrets.delete(secretName);
  if (await secrets.exists(secretName)) {
    return recordOpen(core, current, `secret ${secretName} still exists after delete`, 'revoking');
  }
  const verifiedAt = clock.now();
  const { trustDebtMs, pipelineMs, revokeMs, proofMs, exposureMs } = debtSplit({ ...current, verifiedAt });
  const proof = {
    revokedAt: current.revokedAt,
    verifyAttempts: current.verifyAttempts,
    verifiedAt,
    trustDebtMs,
    avoidedDebtMs: avoidedDebtMs(cred.naturalExpiry, verifiedAt),
    pipelineMs,
    revokeMs,
    proofMs,
    exposureMs,
    lastError: undefined,
  };
  const verified: CredentialRecord = { ...current, ...proof, state: CREDENTIAL_TRANSITIONS.verify.to, nextCheckAt: undefined };
  // The lease closes on what this returns: a proof the ledger did not take must not count as one.
  if (!(await landCredential(core, 'verify', cred, proof))) {
    return recordOpen(core, current, 'the proof could not be recorded in the ledger; it will be proven again', 'revoking');
  }
  observer?.verified?.(verified);
  return verified;
}

/**
 * A credential write that must land before the lease moves on. A false is a lost race or a write
 * that did not apply: the record is re-read, and the write retried while its stored state still
 * allows it. True once the stored record is in the transition's target state.
 */
async function landCredential(
  core: Core,
  name: CredentialTransitionName,
  cred: Pick<CredentialRecord, 'taskId' | 'grant'>,
  patch: Partial<CredentialRecord>,
): Promise<boolean> {
  const { ledger } = core.deps;
  const t = CREDENTIAL_TRANSITIONS[name] as { from: readonly string[]; to: string };
  const key = grantKey(cred.grant);
  for (let attempt = 0; attempt < 3; attempt++) {
    if (await transitionCredential(ledger, name, cred, patch)) return true;
    const stored = (await ledger.getLease(cred.taskId))?.credentials.find((c) => grantKey(c.grant) === key);
    if (!stored) return false;
    // Another worker (or this write, its response lost) got there first.
    if (stored.state === t.to && name !== 'startRevoking') return true;
    if (!t.from.includes(stored.state)) return stored.state === t.to;
  }
  return false;
}

/** The delay before the next try of a credential that failed `failures` times. */
export function retryDelayMs(core: Core, failures: number): number {
  // At least a second between tries, never more than the cap (the floor yields to a smaller cap).
  return Math.min(Math.max(core.opts.verifyInitialDelayMs * 2 ** Math.min(Math.max(1, failures), 30), 1_000), core.opts.retryMaxDelayMs);
}

/** Records an unproven revocation honestly: state, error, growing debt, and when to try again. */
export async function recordOpen(
  core: Core,
  cred: CredentialRecord,
  error: string,
  state: 'revoking' | 'still-valid',
): Promise<CredentialRecord> {
  const now = core.deps.clock.now();
  const open: CredentialRecord & { state: typeof state } = {
    ...cred,
    state,
    lastError: error,
    nextCheckAt: now + retryDelayMs(core, cred.verifyAttempts),
  };
  await transitionCredential(core.deps.ledger, state === 'still-valid' ? 'markStillValid' : 'leaveRevoking', cred, {
    lastError: error,
    revokedAt: cred.revokedAt,
    verifyAttempts: cred.verifyAttempts,
    nextCheckAt: open.nextCheckAt,
  });
  core.deps.observer?.revocationFailed?.(open, error);
  core.log.error('revocation not yet proven; will retry', {
    taskId: cred.taskId,
    grant: grantKey(cred.grant),
    state,
    error,
    openDebtMs: openDebt(open, now),
  });
  await announceRevocationFailed(core, open, error, now);
  await core.deps.reverify?.schedule(cred.taskId, cred.grant, (open.nextCheckAt as number) - now);
  return open;
}
