import { grantKey } from '../events/schemas.ts';
import { describeError } from './errors.ts';
import type { LifecycleLogger } from './lifecycle.ts';
import type { Clock, Ledger, TargetDriver, TargetRegistry, VerifyResult } from './ports.ts';
import type { CredentialRecord } from './records.ts';
import { listUnverifiedCredentials } from './open-items.ts';

/**
 * Reconciliation (issue 5 §2): what exists on each target against what the ledger says.
 *
 * - An **orphan** is a managed credential on a target (a `tl_…` role) that no open ledger item
 *   accounts for: no record at all, or one already marked verified. Write-ahead intents make the
 *   first impossible unless the ledger lost data, and the second means a verification was wrong or
 *   something re-created the credential; either way it is revoked, verified and reported.
 * - A **missing** credential is one the ledger says is live (issued or still-valid) that the target
 *   does not have. It is reported (someone dropped it, or a failover lost it); the normal end of
 *   its lease will prove it rejected.
 *
 * Safe against concurrent issuing: a credential is created on a target only after its intent is in
 * the ledger's open index, and an item never goes back to open once verified. Target listing comes
 * first, the ledger listing second, and a candidate is re-checked against the ledger after
 * `graceMs` (the open index is eventually consistent in DynamoDB) before it is revoked.
 */

export interface ReconcileOptions {
  /** Wait before re-reading the ledger for orphan candidates (index lag). Default 1 000 ms. */
  graceMs: number;
  /** Most orphans revoked per run; the rest are reported and handled by the next run. */
  maxRevocations: number;
  /** Ledger items read per page while building the open set. */
  pageSize: number;
}

export const DEFAULT_RECONCILE_OPTIONS: ReconcileOptions = { graceMs: 1_000, maxRevocations: 100, pageSize: 500 };

export interface OrphanFinding {
  target: string;
  externalId: string;
  /** `revoked`: revoked and verified rejected; `open`: revocation not (yet) proven; `deferred`: over this run's bound. */
  action: 'revoked' | 'open' | 'deferred';
  verify?: VerifyResult;
  error?: string;
}

export interface MissingFinding {
  target: string;
  externalId: string;
  taskId: string;
  grant: string;
  state: CredentialRecord['state'];
}

export interface ReconcileReport {
  targets: Array<{ target: string; kind: string; onTarget: number; error?: string }>;
  /** Open ledger credentials seen while reconciling. */
  ledgerOpen: number;
  orphans: OrphanFinding[];
  missing: MissingFinding[];
}

export interface ReconcileDeps {
  ledger: Ledger;
  /** `entries()` or `names()` (the config's registry has both) give each driver its configured target name. */
  targets: TargetRegistry & { names?(): string[] };
  clock: Clock;
  log?: LifecycleLogger;
  /** Called before each target operation (the reaper's per-target rate limit). */
  acquire?: (target: string) => Promise<void>;
}

function namedDrivers(targets: ReconcileDeps['targets']): Array<{ name: string; driver: TargetDriver }> {
  const entries = targets.entries?.();
  if (entries) return entries.map(({ name, driver }) => ({ name, driver }));
  const names = targets.names?.();
  if (names)
    return names.flatMap((name) => {
      const driver = targets.get(name);
      return driver ? [{ name, driver }] : [];
    });
  // A registry that knows no names: the kind stands in (findings then name the kind, not the target).
  return targets.all().map((driver) => ({ name: driver.kind, driver }));
}

export async function reconcile(deps: ReconcileDeps, options: Partial<ReconcileOptions> = {}): Promise<ReconcileReport> {
  const opts = { ...DEFAULT_RECONCILE_OPTIONS, ...options };
  const report: ReconcileReport = { targets: [], ledgerOpen: 0, orphans: [], missing: [] };

  // 1. What the targets hold (first: anything created after this is not a candidate).
  const listedAt = deps.clock.now();
  const onTarget = new Map<string, { driver: TargetDriver; ids: Set<string> }>();
  for (const { name, driver } of namedDrivers(deps.targets)) {
    if (!driver.listManaged) continue;
    try {
      const ids = new Set(await driver.listManaged());
      onTarget.set(name, { driver, ids });
      report.targets.push({ target: name, kind: driver.kind, onTarget: ids.size });
    } catch (err) {
      report.targets.push({ target: name, kind: driver.kind, onTarget: 0, error: describeError(err) });
    }
  }
  if (onTarget.size === 0) return report;

  // 2. What the ledger accounts for.
  const open = await listUnverifiedCredentials(deps.ledger, opts.pageSize);
  report.ledgerOpen = open.length;
  const accounted = new Set(open.map((c) => `${c.target}\u0000${c.externalId}`));

  for (const cred of open) {
    const listed = onTarget.get(cred.target);
    if (!listed || listed.ids.has(cred.externalId)) continue;
    // Only credentials that existed before the target was listed can be missing from it.
    if ((cred.state === 'issued' || cred.state === 'still-valid') && cred.issuedAt !== undefined && cred.issuedAt < listedAt) {
      report.missing.push({
        target: cred.target,
        externalId: cred.externalId,
        taskId: cred.taskId,
        grant: grantKey(cred.grant),
        state: cred.state,
      });
    }
  }

  let candidates: Array<{ target: string; externalId: string; driver: TargetDriver }> = [];
  for (const [target, { driver, ids }] of onTarget) {
    for (const externalId of ids) if (!accounted.has(`${target}\u0000${externalId}`)) candidates.push({ target, externalId, driver });
  }
  if (candidates.length && opts.graceMs > 0) {
    await deps.clock.sleep(opts.graceMs);
    const again = new Set((await listUnverifiedCredentials(deps.ledger, opts.pageSize)).map((c) => `${c.target}\u0000${c.externalId}`));
    candidates = candidates.filter((c) => !again.has(`${c.target}\u0000${c.externalId}`));
  }

  // 3. Orphans: revoke and prove, within this run's bound.
  for (const [i, c] of candidates.entries()) {
    if (i >= opts.maxRevocations) {
      report.orphans.push({ target: c.target, externalId: c.externalId, action: 'deferred' });
      continue;
    }
    const ctx = { taskId: '(orphan)', grant: { target: c.target, access: 'orphan' }, externalId: c.externalId };
    const finding: OrphanFinding = { target: c.target, externalId: c.externalId, action: 'open' };
    try {
      await deps.acquire?.(c.target);
      await c.driver.revoke(ctx);
      finding.verify = await c.driver.verify(ctx);
      if (finding.verify === 'rejected') finding.action = 'revoked';
    } catch (err) {
      finding.error = describeError(err);
    }
    report.orphans.push(finding);
  }

  if (report.orphans.length) {
    deps.log?.error('reconciliation found credentials on a target that the ledger does not account for', {
      orphans: report.orphans.map((o) => ({
        target: o.target,
        externalId: o.externalId,
        action: o.action,
        verify: o.verify,
        error: o.error,
      })),
    });
  }
  if (report.missing.length) {
    deps.log?.warn('reconciliation: ledger credentials missing on their target', {
      missing: report.missing.map((m) => ({ target: m.target, taskId: m.taskId, grant: m.grant, state: m.state })),
    });
  }
  return report;
}
