import { grantKey } from '../events/schemas.ts';
import type { LeaseLifecycle, LifecycleLogger } from './lifecycle.ts';
import type { Clock, Ledger } from './ports.ts';
import type { CredentialRecord } from './records.ts';
import { openDebtMs } from './trust-debt.ts';

export interface ReaperOptions {
  /** Most items handled in one run, so a backlog of thousands never floods a target. */
  batchSize: number;
  /** Most target operations in flight at once. */
  concurrency: number;
  /** A write-ahead intent older than this, whose lease is not being issued, is revoked. */
  intentStaleMs: number;
  /** Verification budget per credential inside a reaper run. */
  verifyDeadlineMs: number;
}

export const DEFAULT_REAPER_OPTIONS: ReaperOptions = {
  batchSize: 200,
  concurrency: 4,
  intentStaleMs: 5 * 60_000,
  verifyDeadlineMs: 5_000,
};

export interface ReaperReport {
  expired: number;
  resumedEnding: number;
  rolledBack: number;
  revokedIntents: number;
  reverified: number;
  stillOpen: number;
  /** Credentials whose task ended and that are not yet verified, and the oldest's age. */
  openDebt: { count: number; oldestMs: number };
  /** More due work than one batch: the next run continues. */
  backlog: boolean;
}

/**
 * The reaper (DESIGN §2): lost `Task Ended`, half-done revocations, stale write-ahead intents,
 * unverified credentials. Idempotent; safe to run concurrently with event handlers because
 * every step goes through the same conditional ledger writes.
 */
export async function runReaper(
  lifecycle: LeaseLifecycle,
  deps: { ledger: Ledger; clock: Clock; log?: LifecycleLogger },
  options: Partial<ReaperOptions> = {},
): Promise<ReaperReport> {
  const opts = { ...DEFAULT_REAPER_OPTIONS, ...options };
  const now = deps.clock.now();
  const page = await deps.ledger.listOpen(now, opts.batchSize);
  const report: ReaperReport = { expired: 0, resumedEnding: 0, rolledBack: 0, revokedIntents: 0, reverified: 0, stillOpen: 0, openDebt: { count: 0, oldestMs: 0 }, backlog: page.cursor !== undefined };
  const handledTasks = new Set<string>();

  const leaseJobs = page.leases.map((lease) => async () => {
    handledTasks.add(lease.taskId);
    if (lease.state === 'active' && lease.expiresAt !== undefined && lease.expiresAt <= now) {
      // Lost `Task Ended`: the lease ran out; debt is measured from its expiry.
      await lifecycle.endLease(lease.taskId, 'expired', lease.expiresAt);
      report.expired++;
    } else if (lease.state === 'ending' && (lease.lockedUntil ?? 0) < now) {
      await lifecycle.endLease(lease.taskId, lease.outcome ?? 'expired', lease.endedAt ?? now);
      report.resumedEnding++;
    } else if (lease.state === 'issuing' && (lease.lockedUntil ?? 0) < now) {
      if (await deps.ledger.updateLease(lease.taskId, ['issuing'], { lockedUntil: now + opts.intentStaleMs }, { lockedBefore: now })) {
        await lifecycle.rollBack(lease, 'issuing was interrupted (the worker stopped before the lease was active); everything issued was revoked');
        report.rolledBack++;
      }
    }
  });

  const credJobs = page.credentials.map((cred) => async () => {
    if (handledTasks.has(cred.taskId)) return;
    const found = await deps.ledger.getLease(cred.taskId);
    const lease = found?.lease;
    const fresh = found?.credentials.find((c) => grantKey(c.grant) === grantKey(cred.grant)) ?? cred;
    if (fresh.state === 'verified') return;
    if (fresh.state === 'intent') {
      if (lease?.state === 'issuing' && (lease.lockedUntil ?? 0) >= now) return;
      if (now - fresh.intentAt < opts.intentStaleMs) return;
      const done = await lifecycle.revokeAndVerify(fresh, fresh.endedAt ?? now, opts.verifyDeadlineMs);
      report.revokedIntents++;
      if (done.state !== 'verified') report.stillOpen++;
      return;
    }
    if (fresh.state === 'revoking' || fresh.state === 'still-valid') {
      const done = await lifecycle.revokeAndVerify(fresh, fresh.endedAt ?? lease?.endedAt ?? now, opts.verifyDeadlineMs);
      report.reverified++;
      if (done.state !== 'verified') report.stillOpen++;
      // The last credential of an ending lease proven dead closes the lease.
      if (done.state === 'verified' && lease?.state === 'ending') await lifecycle.endLease(lease.taskId, lease.outcome ?? 'expired', lease.endedAt ?? now);
    }
  });

  await runLimited([...leaseJobs, ...credJobs], opts.concurrency, deps.log);

  // Open debt is measured after the run, over what is still unproven.
  const after = await deps.ledger.listOpen(Number.MAX_SAFE_INTEGER, opts.batchSize * 5);
  const ages = after.credentials
    .filter((c: CredentialRecord) => c.endedAt !== undefined)
    .map((c) => openDebtMs(c, deps.clock.now()))
    .filter((x): x is number => x !== undefined);
  report.openDebt = { count: ages.length, oldestMs: ages.length ? Math.max(...ages) : 0 };
  return report;
}

/** Runs jobs with at most `limit` in flight; one job's failure is logged, never stops the rest. */
async function runLimited(jobs: Array<() => Promise<void>>, limit: number, log?: LifecycleLogger): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++] as () => Promise<void>;
      try {
        await job();
      } catch (err) {
        log?.error('reaper job failed; it will be retried on the next run', { error: err instanceof Error ? err.message : String(err) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
}
