import { grantKey } from '../events/schemas.ts';
import type { Grant } from '../events/schemas.ts';
import { announceIssued } from './announce.ts';
import { secretNameFor } from './context.ts';
import type { Core, StartResult } from './context.ts';
import { revokeLease } from './end.ts';
import { ConflictError, DenialError, describeError } from './errors.ts';
import type { IssuedCredential, TargetDriver } from './ports.ts';
import type { CredentialRecord, LeaseRecord } from './records.ts';
import { rollBack } from './rollback.ts';
import {
  CREDENTIAL_TRANSITIONS,
  LEASE_TRANSITIONS,
  credentialStep,
  leaseStep,
  transitionCredential,
  transitionLease,
  transitionTogether,
} from './transitions.ts';
import { revokeAndVerify } from './verify.ts';

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Issues every grant of an `issuing` lease whose lock we hold (a fresh one, or one taken over
 * from a worker that died), then activates and announces it: all or none.
 */
export async function issueGrants(
  core: Core,
  lease: LeaseRecord,
  readerPrincipal: string | undefined,
  receivedAt: number,
  fresh = false,
): Promise<StartResult> {
  const { ledger, clock } = core.deps;
  const { taskId } = lease;
  const workload = lease.workload as string;
  const expiresAt = lease.expiresAt as number;
  // A lease we just created has no credentials yet; a taken-over one may have some.
  const prior = fresh ? [] : ((await ledger.getLease(taskId))?.credentials ?? []);
  const existing = new Map(prior.map((c) => [grantKey(c.grant), c]));
  // A credential past `issued` means a rollback or end that overran its lock is taking this lease
  // apart; re-issuing would make a credential nobody revokes. Leave the lease to it (or, if it
  // died, to the reaper after our lock) and create nothing.
  const ending = prior.filter((c) => !REUSABLE.includes(c.state));
  if (ending.length) {
    core.log.warn('credentials of this lease are already being revoked; not issuing', {
      taskId,
      credentials: ending.map((c) => ({ grant: grantKey(c.grant), state: c.state })),
    });
    return { status: 'in-progress', taskId };
  }

  const prepared = await Promise.allSettled(
    lease.grants.map((grant) => issueOne(core, lease, grant, existing.get(grantKey(grant)), readerPrincipal)),
  );
  // Decided once: a retried activation must carry the same instant to recognise its own write.
  const issuedAt = clock.now();
  const activation = { issuedAt, expiresAt, lockedUntil: undefined, taskToken: undefined };
  // The common case in one request: every issued record and the activation, all or none. If any
  // condition fails (an end was requested, a record moved), nothing was written and the writes
  // below go one by one, deciding each race as they always did.
  const made = prepared.flatMap((r) => (r.status === 'fulfilled' && r.value.patch ? [r.value] : []));
  const together =
    made.length > 0 &&
    prepared.every((r) => r.status === 'fulfilled') &&
    (await transitionTogether(ledger, [
      ...made.map((m) => credentialStep('issue', m.record, m.patch as Partial<CredentialRecord>)),
      leaseStep('activate', lease, activation, { notEndRequested: true }),
    ]));
  const results: Array<PromiseSettledResult<CredentialRecord>> = together
    ? prepared.map((r) => ({ status: 'fulfilled' as const, value: (r as PromiseFulfilledResult<Issued>).value.record }))
    : await Promise.all(
        prepared.map((r) =>
          r.status === 'rejected'
            ? r
            : recordIssued(core, lease, r.value).then(
                (value) => ({ status: 'fulfilled' as const, value }),
                (reason: unknown) => ({ status: 'rejected' as const, reason }),
              ),
        ),
      );
  const failures = results.flatMap((r, i) =>
    r.status === 'rejected' ? [{ grant: lease.grants[i] as Grant, error: r.reason as unknown }] : [],
  );

  if (failures.some((f) => f.error instanceof ConflictError)) {
    // Someone else is ending the lease: take back what this run made (intents and issued ones:
    // theirs are past those), and leave the lease's state and announcement to them (never a
    // second Lease Denied, never Lease Issued).
    const ours = ((await ledger.getLease(taskId))?.credentials ?? []).filter((c) => REUSABLE.includes(c.state));
    core.log.warn('a credential was revoked by someone else while we issued; revoking what we made, not announcing', {
      taskId,
      revoking: ours.map((c) => grantKey(c.grant)),
    });
    await Promise.all(ours.map((c) => revokeAndVerify(core, c, clock.now())));
    return { status: 'in-progress', taskId };
  }

  if (failures.length) {
    // All or none: take back whatever reached a target, then deny.
    const message = `could not issue ${failures.map((f) => `${grantKey(f.grant)} (${describeError(f.error)})`).join('; ')}; nothing was left issued`;
    core.log.error('issue failed; rolling back', {
      taskId,
      failures: failures.map((f) => ({ grant: grantKey(f.grant), error: describeError(f.error) })),
    });
    await rollBack(core, lease, message);
    return { status: 'denied', taskId, code: 'issue-failed', message };
  }

  const credentials = results.map((r) => (r as PromiseFulfilledResult<CredentialRecord>).value);
  // expiresAt, the active lease's due time, is carried so the write needs no read.
  const activated = together || (await transitionLease(ledger, 'activate', lease, activation, { notEndRequested: true }));
  // A lost response to an applied write reads as a failed condition: our own issuedAt says it won.
  const current = activated ? undefined : await ledger.getLease(taskId);
  if (!activated && !(current?.lease.state === 'active' && current.lease.issuedAt === issuedAt)) {
    // Never announce a lease that did not become active: the workload must not be told to use
    // credentials of a task that already ended, or of a lease another worker rolled back.
    if (current?.lease.endRequested && current.lease.state === 'issuing') {
      // `Task Ended` arrived while we were issuing; it left the end to us. Straight to `ending`
      // (never `active`): a redelivered start must not see it live, and if we die here the
      // reaper resumes the end after the lock instead of waiting for the lease to expire.
      const now = clock.now();
      core.log.info('Task Ended arrived while issuing; revoking without announcing the lease', { taskId });
      if (
        await transitionLease(ledger, 'endWhileIssuing', current.lease, {
          issuedAt,
          lockedUntil: now + core.opts.lockMs,
          taskToken: undefined,
        })
      ) {
        const ending = {
          ...current.lease,
          state: LEASE_TRANSITIONS.endWhileIssuing.to,
          issuedAt,
          endedAt: current.lease.endedAt ?? now,
          outcome: current.lease.outcome ?? 'succeeded',
        };
        const ended = await revokeLease(core, ending, (await ledger.getLease(taskId))?.credentials ?? credentials);
        return { status: 'duplicate', taskId, state: ended.status === 'closed' ? 'closed' : 'ending' };
      }
      return { status: 'in-progress', taskId };
    }
    core.log.warn('lease left the issuing state while we issued; not announcing it', { taskId, state: current?.lease.state });
    return { status: 'in-progress', taskId };
  }

  const active: LeaseRecord = { ...lease, state: LEASE_TRANSITIONS.activate.to, issuedAt, lockedUntil: undefined, nextCheckAt: expiresAt };
  await announceIssued(core, active, credentials, lease.taskToken);
  core.deps.observer?.issued?.(active, credentials, issuedAt - receivedAt);
  core.log.info('lease issued', { taskId, workload, grants: lease.grants.map(grantKey), expiresAt: iso(expiresAt) });
  return { status: 'issued', taskId, credentials };
}

/** Prior credentials an issue may resume: an issued one is reused, an intent revoked and re-made. */
const REUSABLE: readonly CredentialRecord['state'][] = ['intent', 'issued'];

/**
 * One grant, made on its target: what `recordIssued` (or the activation's transaction) writes.
 * `patch` is absent for a credential a previous run already recorded as issued.
 */
interface Issued {
  record: CredentialRecord;
  patch?: Partial<CredentialRecord>;
  driver: TargetDriver;
  issued: IssuedCredential;
  secretName: string;
}

/** One grant: write-ahead intent, the target's credential, the secret delivered (the issued record is written after). */
async function issueOne(
  core: Core,
  lease: LeaseRecord,
  grant: Grant,
  prior: CredentialRecord | undefined,
  readerPrincipal?: string,
): Promise<Issued> {
  const { ledger, clock, targets, secrets } = core.deps;
  const driver = targets.get(grant.target);
  if (!driver) throw new DenialError('unknown-target', `no driver for target ${grant.target}`);
  if (prior?.state === 'issued') {
    return { record: prior, driver, issued: { secret: {}, naturalExpiry: prior.naturalExpiry ?? 0 }, secretName: prior.secretName ?? '' };
  }
  if (prior && prior.state !== 'intent')
    throw new ConflictError(`credential ${grantKey(grant)} is already ${prior.state}; not re-issuing it`);
  const key = grantKey(grant);
  const now = clock.now();
  const externalId = driver.externalId(lease.taskId, grant);
  const expiresAt = lease.expiresAt as number;

  if (prior) {
    // A worker died after writing the intent; the target may hold a half-made credential.
    await driver.revoke({ taskId: lease.taskId, grant, externalId, metadata: prior.metadata, intentAt: prior.intentAt });
  } else {
    const intent: CredentialRecord = {
      taskId: lease.taskId,
      grant,
      target: grant.target,
      kind: driver.kind,
      externalId,
      state: CREDENTIAL_TRANSITIONS.intend.to,
      workload: lease.workload as string,
      initiator: lease.initiator,
      workflow: lease.workflow,
      rule: lease.rule,
      intentAt: now,
      verifyAttempts: 0,
      // Due when our lock runs out: if we die, the reaper revokes whatever reached the target.
      nextCheckAt: now + core.opts.lockMs,
    };
    if (!(await ledger.createCredential(intent))) {
      throw new Error(`credential intent for ${key} already exists`);
    }
  }

  const issued = await driver.issue({
    lease: {
      taskId: lease.taskId,
      workload: lease.workload as string,
      initiator: lease.initiator,
      expiresAt,
      durationSeconds: Math.round((expiresAt - now) / 1000),
    },
    grant,
    externalId,
  });
  const stored = await secrets.put({
    name: secretNameFor(lease.taskId, grant),
    value: issued.secret,
    taskId: lease.taskId,
    grant,
    workload: lease.workload as string,
    readerPrincipal,
  });
  const patch: Partial<CredentialRecord> = {
    issuedAt: clock.now(),
    naturalExpiry: issued.naturalExpiry,
    metadata: issued.metadata,
    secretName: stored.name,
    secretArn: stored.arn,
    // Due at the lease's expiry: past it, a lost Task Ended is open debt (trust-debt.ts).
    nextCheckAt: expiresAt,
  };
  const record = {
    ...(prior ?? ({} as CredentialRecord)),
    taskId: lease.taskId,
    grant,
    target: grant.target,
    kind: driver.kind,
    externalId,
    workload: lease.workload as string,
    initiator: lease.initiator,
    workflow: lease.workflow,
    rule: lease.rule,
    intentAt: prior?.intentAt ?? now,
    verifyAttempts: prior?.verifyAttempts ?? 0,
    ...patch,
    state: CREDENTIAL_TRANSITIONS.issue.to,
  } as CredentialRecord;
  return { record, patch, driver, issued, secretName: stored.name };
}

/** Writes one credential's `issued` record; takes back what was made if the record moved on meanwhile. */
async function recordIssued(core: Core, lease: LeaseRecord, made: Issued): Promise<CredentialRecord> {
  const { record, patch, driver, issued, secretName } = made;
  if (!patch) return record;
  const { ledger } = core.deps;
  const key = grantKey(record.grant);
  if (!(await transitionCredential(ledger, 'issue', { taskId: lease.taskId, grant: record.grant }, patch))) {
    const current = (await ledger.getLease(lease.taskId))?.credentials.find((c) => grantKey(c.grant) === key);
    // A lost response to our own applied write reads as a failed condition: our issuedAt says it won.
    const ours = current?.state === 'issued' && current.issuedAt === patch.issuedAt && current.naturalExpiry === patch.naturalExpiry;
    if (!ours) {
      await discard(core, driver, lease.taskId, record.grant, record.externalId, issued, secretName, current);
      throw new ConflictError(
        `credential ${key} left the intent state while it was being issued (now ${current?.state ?? 'gone'}); what was just created was revoked`,
      );
    }
  }
  return record;
}

/**
 * Takes back what issueOne just made when its record moved on under it (a rollback or end revoked
 * the intent meanwhile): whoever did so may already have proven it rejected, so nobody else would.
 */
async function discard(
  core: Core,
  driver: TargetDriver,
  taskId: string,
  grant: Grant,
  externalId: string,
  issued: { naturalExpiry: number; metadata?: Record<string, string> },
  secretName: string,
  current: CredentialRecord | undefined,
): Promise<void> {
  const { secrets } = core.deps;
  // Another issuer's record won: the name is shared and the ledger accounts for it; its lease's end revokes it.
  if (current?.state === 'issued') return;
  const results = await Promise.allSettled([
    driver.revoke({
      taskId,
      grant,
      externalId,
      metadata: issued.metadata,
      naturalExpiry: issued.naturalExpiry,
      intentAt: current?.intentAt,
    }),
    secrets.delete(secretName),
  ]);
  const errors = results.flatMap((r) => (r.status === 'rejected' ? [describeError(r.reason)] : []));
  if (errors.length) {
    // Its record is not ours to move; reconciliation finds a role on the target the ledger does not account for.
    core.log.error('could not take back a credential issued after it was revoked; reconciliation will find it', {
      taskId,
      grant: grantKey(grant),
      errors,
    });
  }
}
