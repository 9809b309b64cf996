import { grantKey } from '../events/schemas.ts';
import { describeError } from './errors.ts';
import type { LeaseLifecycle, LifecycleLogger } from './lifecycle.ts';
import type { Clock, Ledger, TargetRegistry } from './ports.ts';
import type { CredentialRecord } from './records.ts';
import { reconcile } from './reconcile.ts';
import { transitionLease } from './transitions.ts';
import { openDebt } from './trust-debt.ts';
import type { ReconcileOptions, ReconcileReport } from './reconcile.ts';

export interface ReaperOptions {
  /** Most tasks handled in one run, so a backlog of thousands never floods a target. */
  batchSize: number;
  /** Most tasks worked on at once. */
  concurrency: number;
  /** A write-ahead intent older than this, whose lease is not being issued, is revoked. */
  intentStaleMs: number;
  /** Verification budget per credential inside a reaper run. */
  verifyDeadlineMs: number;
  /** Per target: credential revocations (revoke + verify) started per second, on average… */
  targetRatePerSecond: number;
  /** …and at most this many at once after a quiet spell (token bucket). */
  targetBurst: number;
  /** Most due ledger items read per run, actionable or not (locked, young intents). */
  scanLimit: number;
  /** No new task is started after this long (keep it under the scheduler's timeout). */
  runBudgetMs: number;
  /** Reconcile targets with the ledger every Nth run (needs `targets` and `state`); 0 = never. */
  reconcileEveryRuns: number;
  reconcile: Partial<ReconcileOptions>;
  /** How many of the oldest open-debt credentials the report lists. */
  openDebtItems: number;
  /** Most open ledger items read to measure open debt (the report says when it stopped short). */
  openDebtScanLimit: number;
}

export const DEFAULT_REAPER_OPTIONS: ReaperOptions = {
  batchSize: 200,
  concurrency: 4,
  intentStaleMs: 5 * 60_000,
  verifyDeadlineMs: 5_000,
  targetRatePerSecond: 10,
  targetBurst: 20,
  scanLimit: 2_000,
  runBudgetMs: 4 * 60_000,
  reconcileEveryRuns: 10,
  reconcile: {},
  openDebtItems: 20,
  openDebtScanLimit: 10_000,
};

export interface OpenDebtItem {
  taskId: string;
  grant: string;
  target: string;
  state: CredentialRecord['state'];
  openDebtMs: number;
  verifyAttempts: number;
  lastError?: string;
  nextCheckAt?: number;
}

export interface ReaperReport {
  expired: number;
  resumedEnding: number;
  rolledBack: number;
  revokedIntents: number;
  reverified: number;
  stillOpen: number;
  /** Tasks examined this run (at most batchSize). */
  tasks: number;
  /** Due work left alone: a live worker holds the lease, an intent is not stale yet, a backoff has not passed. */
  skipped: number;
  /** Tasks whose handling threw (they stay due; the next run retries them). */
  failed: number;
  /** Time spent waiting for the per-target rate limit. */
  throttledMs: number;
  /**
   * Credentials no longer needed (task ended or lease expired) and not yet proven rejected: how
   * many, the oldest's age, and the oldest few with their attempts and last error.
   */
  openDebt: { count: number; oldestMs: number; items: OpenDebtItem[]; truncated: boolean };
  /** More due work than one batch: the next run continues. */
  backlog: boolean;
  /** Present on runs that reconciled targets with the ledger. */
  reconcile?: ReconcileReport;
}

/** A token bucket per target, on the injected clock. */
export class TargetRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly ratePerSecond: number,
    private readonly burst: number,
  ) {}

  /** Waits until `target` has a token and takes it; returns how long it waited. */
  async take(target: string): Promise<number> {
    if (!(this.ratePerSecond > 0) || !Number.isFinite(this.ratePerSecond)) return 0;
    const start = this.clock.now();
    for (;;) {
      const now = this.clock.now();
      const b = this.buckets.get(target) ?? { tokens: this.burst, at: now };
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.ratePerSecond);
      b.at = now;
      this.buckets.set(target, b);
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return this.clock.now() - start;
      }
      await this.clock.sleep(Math.ceil(((1 - b.tokens) / this.ratePerSecond) * 1000));
    }
  }
}

/** What a reaper keeps between runs in one process: the run count and the rate-limit buckets. */
export interface ReaperState {
  runs: number;
  limiter?: TargetRateLimiter;
}

export function createReaperState(): ReaperState {
  return { runs: 0 };
}

export interface ReaperDeps {
  ledger: Ledger;
  clock: Clock;
  log?: LifecycleLogger;
  /** Needed for reconciliation, which names each driver by `entries()` or `names()` (the config registry has both). */
  targets?: TargetRegistry & { names?(): string[] };
  /** Keep one per process so rate limits and the reconcile cadence span runs. */
  state?: ReaperState;
}

/**
 * The reaper (docs/architecture.md, "The state machine"): lost `Task Ended` (expired leases), half-done revocations,
 * interrupted issuing, stale write-ahead intents (revoked through their deterministic external
 * id), unproven and still-valid credentials, and every Nth run a reconciliation of each target
 * against the ledger. Works in bounded batches, rate-limited per target. Idempotent and safe to
 * run concurrently with event handlers: every step goes through the same conditional writes.
 */
export async function runReaper(lifecycle: LeaseLifecycle, deps: ReaperDeps, options: Partial<ReaperOptions> = {}): Promise<ReaperReport> {
  const opts = { ...DEFAULT_REAPER_OPTIONS, ...options };
  const { ledger, clock, log } = deps;
  const state = deps.state ?? createReaperState();
  const run = state.runs++;
  state.limiter ??= new TargetRateLimiter(clock, opts.targetRatePerSecond, opts.targetBurst);
  const limiter = state.limiter;
  const startedAt = clock.now();
  const now = startedAt;
  const report: ReaperReport = {
    expired: 0,
    resumedEnding: 0,
    rolledBack: 0,
    revokedIntents: 0,
    reverified: 0,
    stillOpen: 0,
    tasks: 0,
    skipped: 0,
    failed: 0,
    throttledMs: 0,
    openDebt: { count: 0, oldestMs: 0, items: [], truncated: false },
    backlog: false,
  };

  // 1. Due tasks, oldest due first, at most batchSize of them, reading at most scanLimit items.
  const tasks: string[] = [];
  const seen = new Set<string>();
  let scanned = 0;
  let cursor: string | undefined;
  do {
    const page = await ledger.listOpen(now, Math.max(1, Math.min(100, opts.scanLimit - scanned)), cursor);
    for (const item of [...page.leases, ...page.credentials]) {
      if (seen.has(item.taskId)) continue;
      seen.add(item.taskId);
      if (tasks.length < opts.batchSize) tasks.push(item.taskId);
      else report.backlog = true;
    }
    scanned += page.leases.length + page.credentials.length;
    cursor = page.cursor;
  } while (cursor !== undefined && tasks.length < opts.batchSize && scanned < opts.scanLimit);
  if (cursor !== undefined) report.backlog = true;

  const take = async (targets: string[]) => {
    for (const t of targets) report.throttledMs += await limiter.take(t);
  };

  // 2. One job per task: a fresh read, then exactly one decision for the whole task.
  const job = async (taskId: string): Promise<void> => {
    const found = await ledger.getLease(taskId);
    if (!found) return;
    const { lease, credentials } = found;
    const open = credentials.filter((c) => c.state !== 'verified');
    const t = clock.now();
    switch (lease.state) {
      case 'active':
        if (lease.expiresAt !== undefined && lease.expiresAt <= t) {
          // Lost `Task Ended`: the lease ran out; debt is measured from its expiry.
          await take(open.map((c) => c.target));
          await lifecycle.endLease(taskId, 'expired', lease.expiresAt);
          report.expired++;
          return;
        }
        break; // a live lease: only stray credentials below (leftovers of a racing issuer)
      case 'ending':
        if ((lease.lockedUntil ?? 0) >= t) {
          report.skipped++;
          return;
        }
        await take(open.map((c) => c.target));
        await lifecycle.endLease(taskId, lease.outcome ?? 'expired', lease.endedAt ?? t);
        report.resumedEnding++;
        return;
      case 'issuing':
        // The worker died (its lock ran out): take the lease over and revoke whatever it made.
        if ((lease.lockedUntil ?? 0) >= t) {
          report.skipped++;
          return;
        }
        if (await transitionLease(ledger, 'takeOverIssuing', lease, { lockedUntil: t + opts.intentStaleMs }, { lockedBefore: t })) {
          await take(open.map((c) => c.target));
          await lifecycle.rollBack(
            lease,
            'issuing was interrupted (the worker stopped before the lease was active); everything issued was revoked',
          );
          report.rolledBack++;
        }
        return;
      case 'closed':
      case 'denied':
        break; // finished lease: any credential still open below is revoked
    }

    for (const cred of open) {
      if (cred.state === 'issued' && lease.state === 'active') continue; // the live credential of a live lease
      if (cred.state === 'intent' && t - cred.intentAt < opts.intentStaleMs) {
        report.skipped++;
        continue;
      }
      if ((cred.nextCheckAt ?? 0) > t && cred.state !== 'intent' && cred.state !== 'issued') {
        report.skipped++; // its retry backoff has not passed
        continue;
      }
      await take([cred.target]);
      const done = await lifecycle.revokeAndVerify(cred, cred.endedAt ?? lease.endedAt ?? t, opts.verifyDeadlineMs);
      if (cred.state === 'intent') report.revokedIntents++;
      else report.reverified++;
      if (done.state !== 'verified') report.stillOpen++;
    }
  };

  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      if (clock.now() - startedAt > opts.runBudgetMs) {
        report.backlog = true;
        return;
      }
      const taskId = tasks[next++] as string;
      report.tasks++;
      try {
        await job(taskId);
      } catch (err) {
        report.failed++;
        log?.error('reaper: task failed; it stays due and the next run retries it', { taskId, error: describeError(err) });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker));

  // 3. Reconciliation, every Nth run.
  if (deps.targets && opts.reconcileEveryRuns > 0 && run % opts.reconcileEveryRuns === 0) {
    try {
      report.reconcile = await reconcile(
        { ledger, targets: deps.targets, clock, log, acquire: async (target) => void (report.throttledMs += await limiter.take(target)) },
        { maxRevocations: opts.batchSize, ...opts.reconcile },
      );
    } catch (err) {
      log?.error('reaper: reconciliation failed; the next scheduled one retries', { error: describeError(err) });
    }
  }

  // 4. Open debt, measured after the run over everything still unproven.
  report.openDebt = await measureOpenDebt(ledger, clock.now(), opts.openDebtItems, opts.openDebtScanLimit);
  if (report.openDebt.count > 0) {
    const oldest = report.openDebt.items[0];
    log?.warn('open trust debt', {
      count: report.openDebt.count,
      oldestMs: report.openDebt.oldestMs,
      oldest: oldest && {
        taskId: oldest.taskId,
        grant: oldest.grant,
        state: oldest.state,
        attempts: oldest.verifyAttempts,
        lastError: oldest.lastError,
      },
    });
  }
  return report;
}

/**
 * Open debt (trust-debt.ts `openDebt`, the one definition the report shares): credentials whose
 * task ended, or whose lease expired without a `Task Ended`, that are not yet proven rejected.
 * Their age keeps growing until they are.
 */
export async function measureOpenDebt(ledger: Ledger, now: number, items: number, scanLimit: number): Promise<ReaperReport['openDebt']> {
  const debts: OpenDebtItem[] = [];
  let cursor: string | undefined;
  let scanned = 0;
  do {
    const page = await ledger.listOpen(Number.MAX_SAFE_INTEGER, Math.min(500, scanLimit - scanned), cursor);
    scanned += page.leases.length + page.credentials.length;
    for (const c of page.credentials) {
      const debt = openDebt(c, now);
      if (debt === undefined) continue;
      debts.push({
        taskId: c.taskId,
        grant: grantKey(c.grant),
        target: c.target,
        state: c.state,
        openDebtMs: debt,
        verifyAttempts: c.verifyAttempts,
        ...(c.lastError ? { lastError: c.lastError } : {}),
        ...(c.nextCheckAt !== undefined ? { nextCheckAt: c.nextCheckAt } : {}),
      });
    }
    cursor = page.cursor;
  } while (cursor !== undefined && scanned < scanLimit);
  debts.sort((a, b) => b.openDebtMs - a.openDebtMs);
  return {
    count: debts.length,
    oldestMs: debts[0]?.openDebtMs ?? 0,
    items: debts.slice(0, items),
    truncated: cursor !== undefined,
  };
}
