import { DETAIL_TYPES, grantKey, TaskEndedSchema, TaskStartedSchema } from '../events/schemas.ts';
import type { DenialCode, Grant, Outcome, TaskStarted } from '../events/schemas.ts';
import { parseDetail } from '../events/parse.ts';
import { DenialError, describeError, InvalidEventError } from './errors.ts';
import type {
  Clock,
  EventPublisher,
  Ledger,
  PolicyEvaluator,
  SecretStore,
  SvidVerifier,
  TargetRegistry,
  TaskCallback,
  VerifiedWorkload,
} from './ports.ts';
import type { CredentialRecord, EndOutcome, LeaseRecord, LeaseWithCredentials } from './records.ts';
import { avoidedDebtMs, openDebtMs, trustDebtMs } from './trust-debt.ts';

/** Structured, secret-free logging; Powertools' Logger and the local console logger both fit. */
export interface LifecycleLogger {
  info(message: string, attributes?: Record<string, unknown>): void;
  warn(message: string, attributes?: Record<string, unknown>): void;
  error(message: string, attributes?: Record<string, unknown>): void;
}

/** Hooks for metrics and live views; every method is optional and must not throw. */
export interface LifecycleObserver {
  issued?(lease: LeaseRecord, credentials: CredentialRecord[], latencyMs: number): void;
  denied?(code: DenialCode, lease: Pick<LeaseRecord, 'taskId' | 'workload'>): void;
  verified?(credential: CredentialRecord): void;
  stillValid?(credential: CredentialRecord): void;
  revocationFailed?(credential: CredentialRecord, error: string): void;
  ended?(lease: LeaseRecord): void;
}

/** Hands a credential that is not yet proven dead to a later attempt (an SQS delay in AWS). */
export interface ReverifyScheduler {
  schedule(taskId: string, grant: Grant, delayMs: number): Promise<void>;
}

export interface LifecycleOptions {
  /** How long one worker owns a lease's issuing or ending before another may take over. */
  lockMs: number;
  /** How long one call keeps re-verifying before handing over to the scheduler/reaper. */
  verifyDeadlineMs: number;
  verifyInitialDelayMs: number;
  verifyMaxDelayMs: number;
  /** Retry delay cap for a revocation that keeps failing (it is never given up). */
  retryMaxDelayMs: number;
}

export const DEFAULT_LIFECYCLE_OPTIONS: LifecycleOptions = {
  lockMs: 60_000,
  verifyDeadlineMs: 30_000,
  verifyInitialDelayMs: 20,
  verifyMaxDelayMs: 2_000,
  retryMaxDelayMs: 5 * 60_000,
};

export interface LifecycleDeps {
  ledger: Ledger;
  targets: TargetRegistry;
  secrets: SecretStore;
  events: EventPublisher;
  identity: SvidVerifier;
  policy: PolicyEvaluator;
  clock: Clock;
  callback?: TaskCallback;
  reverify?: ReverifyScheduler;
  log?: LifecycleLogger;
  observer?: LifecycleObserver;
  options?: Partial<LifecycleOptions>;
}

export type StartResult =
  | { status: 'issued'; taskId: string; credentials: CredentialRecord[] }
  | { status: 'denied'; taskId: string; code: DenialCode; message: string }
  | { status: 'duplicate'; taskId: string; state: LeaseRecord['state'] }
  | { status: 'in-progress'; taskId: string };

export type EndResult =
  | { status: 'closed'; taskId: string; credentials: CredentialRecord[] }
  | { status: 'open-debt'; taskId: string; credentials: CredentialRecord[] }
  | { status: 'tombstoned'; taskId: string }
  | { status: 'deferred'; taskId: string }
  | { status: 'duplicate'; taskId: string; state: LeaseRecord['state'] }
  | { status: 'in-progress'; taskId: string };

const silentLog: LifecycleLogger = { info() {}, warn() {}, error() {} };

/** Secret names are derived, never random, so a crashed issue can find what it delivered. */
export const secretNameFor = (taskId: string, grant: Grant): string => `tasklease/${taskId}/${grantKey(grant)}`;

const iso = (ms: number) => new Date(ms).toISOString();

/** Denials a later, corrected request may overturn (never a tombstone, never one that issued anything). */
const REOPENABLE = new Set<DenialCode>([
  'svid-invalid',
  'svid-expired',
  'svid-untrusted',
  'svid-replayed',
  'policy-no-rule',
  'policy-grant-not-allowed',
  'policy-duration-exceeded',
  'policy-initiator-not-allowed',
  'unknown-target',
]);

function isReopenable(found: LeaseWithCredentials): boolean {
  const { lease, credentials } = found;
  return lease.state === 'denied' && !lease.tombstone && credentials.length === 0 && lease.denial !== undefined && REOPENABLE.has(lease.denial.code);
}

/**
 * The lease lifecycle core (DESIGN §2). Knows the ports only, so the Lambda handlers and the
 * local runtime run exactly this code with different adapters.
 */
export class LeaseLifecycle {
  private readonly opts: LifecycleOptions;
  private readonly log: LifecycleLogger;

  constructor(private readonly deps: LifecycleDeps) {
    this.opts = { ...DEFAULT_LIFECYCLE_OPTIONS, ...deps.options };
    this.log = deps.log ?? silentLog;
  }

  // ─── Task Started ────────────────────────────────────────────────────────────

  /**
   * Answers a `Task Started` detail. Throws {@link InvalidEventError} for a malformed detail
   * (after publishing `Lease Denied` when a task id can be read) so a queue can dead-letter it.
   */
  async taskStarted(raw: unknown): Promise<StartResult> {
    const receivedAt = this.deps.clock.now();
    let detail: TaskStarted;
    try {
      detail = parseDetail(TaskStartedSchema, raw, 'Task Started');
    } catch (err) {
      // The reason is bounded where it is made (describeIssues), whatever the input's size.
      await this.publishInvalid(raw, err);
      throw err;
    }
    const { taskId } = detail;

    let workload: VerifiedWorkload;
    try {
      workload = await this.deps.identity.verify(detail.svid);
    } catch (err) {
      if (err instanceof DenialError) return this.deny(detail, undefined, err.denial, err.message);
      throw err;
    }

    const existing = await this.deps.ledger.getLease(taskId);
    // A denial for a bad SVID or a policy refusal does not burn the task id: otherwise anyone who
    // can put a forged event on the bus first could block a real task, and an engine could never
    // retry with a fresh SVID. Only a request that passes every check below reopens it.
    const reopen = existing !== undefined && isReopenable(existing);
    if (existing && !reopen) return this.onExistingLease(existing.lease, detail, workload);

    const decision = this.deps.policy.evaluate({
      workload: workload.spiffeId,
      grants: detail.grants,
      durationSeconds: detail.maxDurationSeconds,
      initiator: detail.initiator,
    });
    if (!decision.allowed) return this.deny(detail, workload.spiffeId, decision.code, decision.message, decision.rule);
    const unknown = detail.grants.filter((g) => !this.deps.targets.get(g.target));
    if (unknown.length) {
      return this.deny(detail, workload.spiffeId, 'unknown-target', `no driver is configured for target(s) ${unknown.map((g) => g.target).join(', ')}`);
    }

    if (!(await this.deps.ledger.claimSvid(workload.replayKey, taskId, workload.expiresAt))) {
      return this.deny(detail, workload.spiffeId, 'svid-replayed', 'this JWT-SVID was already used to open a lease for another task; mint a fresh SVID per task');
    }

    const now = this.deps.clock.now();
    const lease: LeaseRecord = {
      taskId,
      state: 'issuing',
      workload: workload.spiffeId,
      initiator: detail.initiator,
      workflow: detail.workflow,
      rule: decision.rule,
      grants: detail.grants,
      requestedAt: receivedAt,
      expiresAt: now + detail.maxDurationSeconds * 1000,
      lockedUntil: now + this.opts.lockMs,
      taskToken: detail.taskToken,
    };
    const { taskId: _key, ...fields } = lease;
    const opened = reopen
      ? // Conditional on the very denial we judged reopenable: a Task Ended may tombstone it meanwhile.
        await this.deps.ledger.updateLease(taskId, ['denied'], { ...fields, denial: undefined, closedAt: undefined }, {
          denialCode: existing.lease.denial?.code,
          notTombstone: true,
        })
      : await this.deps.ledger.createLease(lease);
    if (!opened) {
      const raced = await this.deps.ledger.getLease(taskId);
      return raced ? this.onExistingLease(raced.lease, detail, workload) : { status: 'in-progress', taskId };
    }
    // A reopenable denial has no credentials (isReopenable), so either way there is nothing to resume.
    return this.issueGrants(lease, decision.readerPrincipal, receivedAt, true);
  }

  private async onExistingLease(lease: LeaseRecord, detail: TaskStarted, workload: VerifiedWorkload): Promise<StartResult> {
    if (lease.tombstone) {
      if (lease.denial?.code === 'task-already-ended') return { status: 'duplicate', taskId: lease.taskId, state: lease.state };
      const message = `task ${lease.taskId} already ended (${lease.outcome ?? 'unknown outcome'}) before it started; nothing is issued for it`;
      await this.deps.ledger.updateLease(lease.taskId, ['closed', 'denied'], {
        denial: { code: 'task-already-ended', message },
        workload: workload.spiffeId,
        initiator: detail.initiator,
        workflow: detail.workflow,
        grants: detail.grants,
      });
      await this.publishDenied(detail, workload.spiffeId, 'task-already-ended', message);
      return { status: 'denied', taskId: lease.taskId, code: 'task-already-ended', message };
    }
    // A stale `issuing` lease means its worker died; a redelivery of *its* start finishes the job.
    // Only the lease's own workload may, with an SVID not used for another task: anyone else's
    // valid SVID must not complete (and so become the reader of) someone else's credentials.
    if (lease.state === 'issuing' && (lease.lockedUntil ?? 0) < this.deps.clock.now() && workload.spiffeId === lease.workload) {
      const now = this.deps.clock.now();
      if (
        (await this.deps.ledger.claimSvid(workload.replayKey, lease.taskId, workload.expiresAt)) &&
        (await this.deps.ledger.updateLease(lease.taskId, ['issuing'], { lockedUntil: now + this.opts.lockMs }, { lockedBefore: now }))
      ) {
        const decision = this.deps.policy.evaluate({
          workload: lease.workload,
          grants: lease.grants,
          durationSeconds: Math.max(1, Math.round(((lease.expiresAt ?? now) - lease.requestedAt) / 1000)),
          initiator: lease.initiator,
        });
        if (!decision.allowed) {
          // The policy changed while the lease was stalled: it no longer holds, so nothing is issued.
          await this.rollBack(lease, `issuing resumed after an interruption, but ${decision.message}`);
          return { status: 'denied', taskId: lease.taskId, code: decision.code, message: decision.message };
        }
        return this.issueGrants(lease, decision.readerPrincipal, lease.requestedAt);
      }
    }
    if (lease.state === 'issuing') return { status: 'in-progress', taskId: lease.taskId };
    if (lease.state === 'active' && !lease.endRequested && lease.workload === workload.spiffeId && (lease.expiresAt ?? 0) > this.deps.clock.now()) {
      // A worker that died between activation and its announcement left a lease nobody was told
      // about; the redelivered start announces it (again: Lease Issued is at-least-once).
      const found = await this.deps.ledger.getLease(lease.taskId);
      if (found?.lease.state === 'active' && !found.lease.endRequested) {
        await this.announce(found.lease, found.credentials, undefined);
        if (detail.taskToken) {
          // The first answer may have gone through; a second one for the same token is refused.
          await this.announceToken(found.lease, found.credentials, detail.taskToken).catch((err: unknown) =>
            this.log.warn('task token already answered or gone', { taskId: lease.taskId, error: describeError(err) }),
          );
        }
      }
    }
    return { status: 'duplicate', taskId: lease.taskId, state: lease.state };
  }

  private async issueGrants(lease: LeaseRecord, readerPrincipal: string | undefined, receivedAt: number, fresh = false): Promise<StartResult> {
    const { taskId } = lease;
    const workload = lease.workload as string;
    const expiresAt = lease.expiresAt as number;
    // A lease we just created has no credentials yet; a taken-over one may have some.
    const prior = fresh ? [] : ((await this.deps.ledger.getLease(taskId))?.credentials ?? []);
    const existing = new Map(prior.map((c) => [grantKey(c.grant), c]));

    const results = await Promise.allSettled(
      lease.grants.map((grant) => this.issueOne(lease, grant, existing.get(grantKey(grant)), readerPrincipal)),
    );
    const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [{ grant: lease.grants[i] as Grant, error: r.reason as unknown }] : []));

    if (failures.length) {
      // All or none: take back whatever reached a target, then deny.
      const message = `could not issue ${failures.map((f) => `${grantKey(f.grant)} (${describeError(f.error)})`).join('; ')}; nothing was left issued`;
      this.log.error('issue failed; rolling back', { taskId, failures: failures.map((f) => ({ grant: grantKey(f.grant), error: describeError(f.error) })) });
      await this.rollBack(lease, message);
      return { status: 'denied', taskId, code: 'issue-failed', message };
    }

    const credentials = results.map((r) => (r as PromiseFulfilledResult<CredentialRecord>).value);
    const issuedAt = this.deps.clock.now();
    const activated = await this.deps.ledger.updateLease(
      taskId,
      ['issuing'],
      // expiresAt is the active lease's due time in the open index: carried so the write needs no read.
      { state: 'active', issuedAt, expiresAt, lockedUntil: undefined, taskToken: undefined },
      { notEndRequested: true },
    );
    // A lost response to an applied write reads as a failed condition: our own issuedAt says it won.
    const current = activated ? undefined : await this.deps.ledger.getLease(taskId);
    if (!activated && !(current?.lease.state === 'active' && current.lease.issuedAt === issuedAt)) {
      // Never announce a lease that did not become active: the workload must not be told to use
      // credentials of a task that already ended, or of a lease another worker rolled back.
      if (current?.lease.endRequested && current.lease.state === 'issuing') {
        // `Task Ended` arrived while we were issuing; it left the end to us. Straight to `ending`
        // (never `active`): a redelivered start must not see it live, and if we die here the
        // reaper resumes the end after the lock instead of waiting for the lease to expire.
        const now = this.deps.clock.now();
        this.log.info('Task Ended arrived while issuing; revoking without announcing the lease', { taskId });
        if (await this.deps.ledger.updateLease(taskId, ['issuing'], { state: 'ending', issuedAt, lockedUntil: now + this.opts.lockMs, taskToken: undefined })) {
          const ending = { ...current.lease, state: 'ending' as const, issuedAt, endedAt: current.lease.endedAt ?? now, outcome: current.lease.outcome ?? 'succeeded' };
          const ended = await this.revokeLease(ending, (await this.deps.ledger.getLease(taskId))?.credentials ?? credentials);
          return { status: 'duplicate', taskId, state: ended.status === 'closed' ? 'closed' : 'ending' };
        }
        return { status: 'in-progress', taskId };
      }
      this.log.warn('lease left the issuing state while we issued; not announcing it', { taskId, state: current?.lease.state });
      return { status: 'in-progress', taskId };
    }

    const active: LeaseRecord = { ...lease, state: 'active', issuedAt, lockedUntil: undefined };
    await this.announce(active, credentials, lease.taskToken);
    this.deps.observer?.issued?.(active, credentials, issuedAt - receivedAt);
    this.log.info('lease issued', { taskId, workload, grants: lease.grants.map(grantKey), expiresAt: iso(expiresAt) });
    return { status: 'issued', taskId, credentials };
  }

  /** Lease Issued (and the task token's answer). At-least-once: a redelivered start may repeat it. */
  private async announce(lease: LeaseRecord, credentials: CredentialRecord[], taskToken: string | undefined): Promise<void> {
    await this.deps.events.publish({
      detailType: DETAIL_TYPES.leaseIssued,
      detail: {
        taskId: lease.taskId,
        workload: lease.workload as string,
        ...(lease.initiator ? { initiator: lease.initiator } : {}),
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
    if (taskToken) await this.announceToken(lease, credentials, taskToken);
  }

  private async announceToken(lease: LeaseRecord, credentials: CredentialRecord[], taskToken: string): Promise<void> {
    await this.deps.callback?.success(taskToken, {
      taskId: lease.taskId,
      expiresAt: iso(lease.expiresAt as number),
      secrets: credentials.map((c) => ({ grant: grantKey(c.grant), secretName: c.secretName, secretArn: c.secretArn })),
    });
  }

  private async issueOne(lease: LeaseRecord, grant: Grant, prior: CredentialRecord | undefined, readerPrincipal?: string): Promise<CredentialRecord> {
    const driver = this.deps.targets.get(grant.target);
    if (!driver) throw new DenialError('unknown-target', `no driver for target ${grant.target}`);
    if (prior?.state === 'issued') return prior;
    const key = grantKey(grant);
    const now = this.deps.clock.now();
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
        state: 'intent',
        workload: lease.workload as string,
        initiator: lease.initiator,
        workflow: lease.workflow,
        rule: lease.rule,
        intentAt: now,
        verifyAttempts: 0,
        nextCheckAt: now + this.opts.lockMs,
      };
      if (!(await this.deps.ledger.createCredential(intent))) {
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
    const stored = await this.deps.secrets.put({
      name: secretNameFor(lease.taskId, grant),
      value: issued.secret,
      taskId: lease.taskId,
      grant,
      workload: lease.workload as string,
      readerPrincipal,
    });
    const patch: Partial<CredentialRecord> = {
      state: 'issued',
      issuedAt: this.deps.clock.now(),
      naturalExpiry: issued.naturalExpiry,
      metadata: issued.metadata,
      secretName: stored.name,
      secretArn: stored.arn,
      nextCheckAt: expiresAt,
    };
    if (!(await this.deps.ledger.updateCredential(lease.taskId, key, ['intent'], patch))) {
      throw new Error(`credential ${key} left the intent state while it was being issued`);
    }
    return {
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
    } as CredentialRecord;
  }

  /** Revokes everything a failed issue left behind and records the lease as denied. */
  async rollBack(lease: LeaseRecord, message: string): Promise<void> {
    const now = this.deps.clock.now();
    const current = await this.deps.ledger.getLease(lease.taskId);
    const creds = current?.credentials ?? [];
    const done = await Promise.all(creds.map((c) => (c.state === 'verified' ? c : this.revokeAndVerify(c, c.endedAt ?? now))));
    const allVerified = done.every((c) => c.state === 'verified');
    await this.deps.ledger.updateLease(lease.taskId, ['issuing'], {
      state: allVerified ? 'denied' : 'ending',
      endedAt: now,
      outcome: 'issue-failed',
      denial: { code: 'issue-failed', message },
      lockedUntil: allVerified ? undefined : now + this.opts.lockMs,
      closedAt: allVerified ? now : undefined,
      taskToken: undefined,
    });
    await this.publishDenied(
      { taskId: lease.taskId, grants: lease.grants, initiator: lease.initiator, taskToken: lease.taskToken },
      lease.workload,
      'issue-failed',
      message,
    );
  }

  // ─── Task Ended ──────────────────────────────────────────────────────────────

  /** Answers a `Task Ended` detail; throws {@link InvalidEventError} for a malformed one. */
  async taskEnded(raw: unknown): Promise<EndResult> {
    const detail = parseDetail(TaskEndedSchema, raw, 'Task Ended');
    return this.endLease(detail.taskId, detail.outcome, this.deps.clock.now());
  }

  /** Ends a lease (from `Task Ended`, or from the reaper with outcome `expired`). */
  async endLease(taskId: string, outcome: EndOutcome, endedAt: number): Promise<EndResult> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const found = await this.deps.ledger.getLease(taskId);
      const now = this.deps.clock.now();
      if (!found) {
        const tombstone: LeaseRecord = { taskId, state: 'closed', tombstone: true, grants: [], requestedAt: now, endedAt, outcome, closedAt: now };
        if (await this.deps.ledger.createLease(tombstone)) {
          this.log.warn('Task Ended before Task Started: tombstone left, a late start will be denied', { taskId, outcome });
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
            if (await this.deps.ledger.updateLease(taskId, ['denied'], { tombstone: true, endedAt, outcome }, { denialCode: lease.denial?.code, notTombstone: true })) {
              return { status: 'tombstoned', taskId };
            }
            continue;
          }
          return { status: 'duplicate', taskId, state: lease.state };
        case 'issuing':
          if (lease.endRequested) return { status: 'duplicate', taskId, state: lease.state };
          if (await this.deps.ledger.updateLease(taskId, ['issuing'], { endRequested: true, endedAt, outcome })) {
            return { status: 'deferred', taskId };
          }
          continue;
        case 'active':
          if (await this.deps.ledger.updateLease(taskId, ['active'], { state: 'ending', endedAt, outcome, lockedUntil: now + this.opts.lockMs })) {
            return this.revokeLease({ ...lease, state: 'ending', endedAt, outcome }, found.credentials);
          }
          continue;
        case 'ending':
          if ((lease.lockedUntil ?? 0) >= now) return { status: 'in-progress', taskId };
          if (await this.deps.ledger.updateLease(taskId, ['ending'], { lockedUntil: now + this.opts.lockMs }, { lockedBefore: now })) {
            return this.revokeLease(lease, found.credentials);
          }
          continue;
      }
    }
    return { status: 'in-progress', taskId };
  }

  /** Revokes and verifies every credential of an `ending` lease we hold the lock of. */
  async revokeLease(lease: LeaseRecord, credentials: CredentialRecord[]): Promise<EndResult> {
    const endedAt = lease.endedAt ?? this.deps.clock.now();
    const done = await Promise.all(credentials.map((c) => (c.state === 'verified' ? c : this.revokeAndVerify(c, c.endedAt ?? endedAt))));
    const open = done.filter((c) => c.state !== 'verified');
    const now = this.deps.clock.now();
    if (open.length) {
      const nextCheck = Math.min(...open.map((c) => c.nextCheckAt ?? now + this.opts.verifyMaxDelayMs));
      await this.deps.ledger.updateLease(lease.taskId, ['ending'], { lockedUntil: nextCheck });
      return { status: 'open-debt', taskId: lease.taskId, credentials: done };
    }
    if (!(await this.deps.ledger.updateLease(lease.taskId, ['ending'], { state: 'closed', closedAt: now, lockedUntil: undefined }))) {
      // Another worker closed it and announced it, unless the write was ours and only its
      // response was lost: our own closedAt tells.
      const current = await this.deps.ledger.getLease(lease.taskId);
      if (!(current?.lease.state === 'closed' && current.lease.closedAt === now)) {
        return { status: 'duplicate', taskId: lease.taskId, state: current?.lease.state ?? 'closed' };
      }
    }
    const closed: LeaseRecord = { ...lease, state: 'closed', closedAt: now };
    await this.deps.events.publish({
      detailType: DETAIL_TYPES.leaseRevoked,
      detail: {
        taskId: lease.taskId,
        workload: lease.workload ?? '',
        outcome: lease.outcome === 'issue-failed' || lease.outcome === undefined ? 'failed' : lease.outcome,
        endedAt: iso(endedAt),
        credentials: done.map((c) => ({
          grant: c.grant,
          kind: c.kind,
          state: c.state,
          verified: c.state === 'verified',
          verifyAttempts: c.verifyAttempts,
          trustDebtMs: c.trustDebtMs ?? null,
          avoidedDebtMs: c.avoidedDebtMs ?? null,
        })),
      },
    });
    this.deps.observer?.ended?.(closed);
    this.log.info('lease closed', { taskId: lease.taskId, credentials: done.length, trustDebtMs: done.map((c) => c.trustDebtMs) });
    return { status: 'closed', taskId: lease.taskId, credentials: done };
  }

  /**
   * Revokes one credential on its target and retries verification with backoff until the
   * target rejects it or this call's deadline passes. Never gives up for good: an unproven
   * credential keeps a `nextCheckAt` for the reaper (and the re-verify queue in AWS).
   */
  async revokeAndVerify(cred: CredentialRecord, endedAt: number, deadlineMs = this.opts.verifyDeadlineMs): Promise<CredentialRecord> {
    const key = grantKey(cred.grant);
    const driver = this.deps.targets.get(cred.target);
    const start = this.deps.clock.now();
    let current: CredentialRecord = {
      ...cred,
      state: 'revoking',
      endedAt: cred.endedAt ?? endedAt,
      revokeStartedAt: cred.revokeStartedAt ?? start,
    };
    // Due again after our lock, should this worker die mid-way (carried so the write needs no read).
    const dueIfAbandoned = () => this.deps.clock.now() + this.opts.lockMs;
    await this.deps.ledger.updateCredential(cred.taskId, key, ['intent', 'issued', 'revoking', 'still-valid'], {
      state: 'revoking',
      endedAt: current.endedAt,
      revokeStartedAt: current.revokeStartedAt,
      nextCheckAt: dueIfAbandoned(),
    });
    if (!driver) return this.recordOpen(current, `no driver configured for target ${cred.target}`, 'revoking');

    const ctx = { taskId: cred.taskId, grant: cred.grant, externalId: cred.externalId, metadata: cred.metadata, naturalExpiry: cred.naturalExpiry, intentAt: cred.intentAt };
    try {
      await driver.revoke(ctx);
    } catch (err) {
      // A failed revoke is an attempt too: the count drives the backoff and shows the debt's history.
      return this.recordOpen({ ...current, verifyAttempts: current.verifyAttempts + 1 }, describeError(err), 'revoking');
    }
    // Recorded with the next write (an attempt that did not prove rejection, or the verification):
    // a crash before it only means the idempotent revoke runs again.
    if (current.revokedAt === undefined) current = { ...current, revokedAt: this.deps.clock.now() };

    // The old secret, if the store still has it, lets the driver prove rejection by trying it.
    // An intent has no secretName yet, but its issue may have delivered one: names are derived.
    const secretName = cred.secretName ?? secretNameFor(cred.taskId, cred.grant);
    const secret = await this.deps.secrets.get(secretName).catch(() => undefined);
    let delay = this.opts.verifyInitialDelayMs;
    let last: 'still-valid' | 'inconclusive' = 'inconclusive';
    let lastError: string | undefined;
    for (;;) {
      let result: Awaited<ReturnType<typeof driver.verify>> | undefined;
      try {
        result = await driver.verify({ ...ctx, secret });
        lastError = undefined;
      } catch (err) {
        lastError = describeError(err);
      }
      current = { ...current, verifyAttempts: current.verifyAttempts + 1 };
      // The proving attempt is recorded by the `verified` write itself; every other one now.
      if (result === 'rejected') break;
      await this.deps.ledger.updateCredential(cred.taskId, key, ['revoking'], {
        verifyAttempts: current.verifyAttempts,
        revokedAt: current.revokedAt,
        lastError,
        nextCheckAt: dueIfAbandoned(),
      });
      if (result === 'still-valid') {
        last = 'still-valid';
        this.deps.observer?.stillValid?.(current);
        this.log.warn('revoked credential still accepted by its target; retrying', { taskId: cred.taskId, grant: key, attempts: current.verifyAttempts });
      } else if (result === 'inconclusive') {
        last = 'inconclusive';
      }
      if (this.deps.clock.now() - start + delay > deadlineMs) {
        return this.recordOpen(current, lastError ?? `verification ${last} after ${current.verifyAttempts} attempts`, last === 'still-valid' ? 'still-valid' : 'revoking');
      }
      await this.deps.clock.sleep(delay);
      delay = Math.min(delay * 2, this.opts.verifyMaxDelayMs);
    }

    await this.deps.secrets.delete(secretName);
    if (await this.deps.secrets.exists(secretName)) {
      return this.recordOpen(current, `secret ${secretName} still exists after delete`, 'revoking');
    }
    const verifiedAt = this.deps.clock.now();
    const debt = trustDebtMs(verifiedAt, current.endedAt as number);
    const avoided = avoidedDebtMs(cred.naturalExpiry, verifiedAt);
    const verified: CredentialRecord = { ...current, state: 'verified', verifiedAt, trustDebtMs: debt, avoidedDebtMs: avoided, lastError: undefined, nextCheckAt: undefined };
    await this.deps.ledger.updateCredential(cred.taskId, key, ['revoking'], {
      state: 'verified',
      revokedAt: current.revokedAt,
      verifyAttempts: current.verifyAttempts,
      verifiedAt,
      trustDebtMs: debt,
      avoidedDebtMs: avoided,
      lastError: undefined,
      nextCheckAt: undefined,
    });
    this.deps.observer?.verified?.(verified);
    return verified;
  }

  /** Records an unproven revocation honestly: state, error, growing debt, and when to try again. */
  private async recordOpen(cred: CredentialRecord, error: string, state: 'revoking' | 'still-valid'): Promise<CredentialRecord> {
    const now = this.deps.clock.now();
    const failures = Math.max(1, cred.verifyAttempts);
    // At least a second between tries, never more than the cap (the floor yields to a smaller cap).
    const delay = Math.min(Math.max(this.opts.verifyInitialDelayMs * 2 ** Math.min(failures, 30), 1_000), this.opts.retryMaxDelayMs);
    const open: CredentialRecord = { ...cred, state, lastError: error, nextCheckAt: now + delay };
    await this.deps.ledger.updateCredential(cred.taskId, grantKey(cred.grant), ['revoking', 'still-valid'], {
      state,
      lastError: error,
      revokedAt: cred.revokedAt,
      verifyAttempts: cred.verifyAttempts,
      nextCheckAt: open.nextCheckAt,
    });
    this.deps.observer?.revocationFailed?.(open, error);
    this.log.error('revocation not yet proven; will retry', { taskId: cred.taskId, grant: grantKey(cred.grant), state, error, openDebtMs: openDebtMs(open, now) });
    await this.deps.events.publish({
      detailType: DETAIL_TYPES.revocationFailed,
      detail: {
        taskId: cred.taskId,
        workload: cred.workload,
        grant: cred.grant,
        kind: cred.kind,
        state,
        verifyAttempts: cred.verifyAttempts,
        openDebtMs: openDebtMs(open, now) ?? 0,
        lastError: error,
      },
    });
    await this.deps.reverify?.schedule(cred.taskId, cred.grant, (open.nextCheckAt as number) - now);
    return open;
  }

  // ─── Denials ─────────────────────────────────────────────────────────────────

  private async deny(
    detail: Pick<TaskStarted, 'taskId' | 'grants' | 'initiator' | 'workflow' | 'taskToken'>,
    workload: string | undefined,
    code: DenialCode,
    message: string,
    rule?: string,
  ): Promise<StartResult> {
    const now = this.deps.clock.now();
    const created = await this.deps.ledger.createLease({
      taskId: detail.taskId,
      state: 'denied',
      workload,
      initiator: detail.initiator,
      workflow: detail.workflow,
      rule,
      grants: detail.grants,
      requestedAt: now,
      denial: { code, message },
      closedAt: now,
    });
    if (!created) {
      // The task already has a record: never overwrite a lease; an earlier denial gets the latest reason.
      const existing = await this.deps.ledger.getLease(detail.taskId);
      if (existing && existing.lease.state !== 'denied') return { status: 'duplicate', taskId: detail.taskId, state: existing.lease.state };
      if (existing && isReopenable(existing)) {
        await this.deps.ledger.updateLease(detail.taskId, ['denied'], { denial: { code, message }, workload, initiator: detail.initiator, workflow: detail.workflow, rule, grants: detail.grants });
      }
    }
    await this.publishDenied(detail, workload, code, message);
    return { status: 'denied', taskId: detail.taskId, code, message };
  }

  private async publishDenied(
    detail: Pick<TaskStarted, 'taskId' | 'grants' | 'initiator' | 'taskToken'>,
    workload: string | undefined,
    code: DenialCode,
    message: string,
  ): Promise<void> {
    this.deps.observer?.denied?.(code, { taskId: detail.taskId, workload });
    this.log.warn('lease denied', { taskId: detail.taskId, workload, code, reason: message });
    await this.deps.events.publish({
      detailType: DETAIL_TYPES.leaseDenied,
      detail: {
        taskId: detail.taskId,
        ...(workload ? { workload } : {}),
        ...(detail.initiator ? { initiator: detail.initiator } : {}),
        grants: detail.grants,
        reason: { code, message },
        deniedAt: iso(this.deps.clock.now()),
      },
    });
    if (detail.taskToken && this.deps.callback) await this.deps.callback.failure(detail.taskToken, code, message);
  }

  private async publishInvalid(raw: unknown, err: unknown): Promise<void> {
    const message = err instanceof InvalidEventError ? err.message : describeError(err);
    const candidate = (raw as { taskId?: unknown } | null)?.taskId;
    const taskId = typeof candidate === 'string' && candidate.length <= 128 && /^[\x20-\x7e]*$/.test(candidate) ? candidate : '(unreadable)';
    this.deps.observer?.denied?.('invalid-event', { taskId });
    this.log.warn('invalid Task Started rejected', { taskId, reason: message });
    await this.deps.events.publish({
      detailType: DETAIL_TYPES.leaseDenied,
      detail: { taskId, grants: [], reason: { code: 'invalid-event', message }, deniedAt: iso(this.deps.clock.now()) },
    });
  }
}

export type { Outcome };
