import { grantKey } from '../shared/events/schemas.ts';
import type { Ledger } from '../shared/lease/ports.ts';
import type { CredentialRecord, LeaseRecord, LeaseWithCredentials } from '../shared/lease/records.ts';
import { debtSplit, openDebt, summarizeDebt } from '../shared/lease/trust-debt.ts';
import type { DebtSummary } from '../shared/lease/trust-debt.ts';
import { blastRadius } from '../shared/metrics/blast-radius.ts';
import type { WorkloadBlastRadius } from '../shared/metrics/blast-radius.ts';
import { listUnverifiedCredentials } from '../shared/lease/open-items.ts';

/** Which leases a report covers. The window applies to the lease's `requestedAt`, like `Ledger.listLeases`. */
export interface ReportFilter {
  workload?: string;
  target?: string;
  since?: number;
  until?: number;
}

/** One credential, flattened for tables and CSV. Times are epoch ms; nothing here is secret. */
export interface CredentialRow {
  taskId: string;
  grant: string;
  target: string;
  kind: string;
  workload: string;
  state: CredentialRecord['state'];
  issuedAt?: number;
  endedAt?: number;
  /** Where endedAt came from (the lease's: engine, queue, broker, expiry, operator). */
  endedAtSource?: LeaseRecord['endedAtSource'];
  /** The engine's endedAt was outside the accepted window and was clamped. */
  endedAtClamped?: boolean;
  /** The broker started revoking / the target refused it (the driver's revoke returned). */
  revokeStartedAt?: number;
  revokedAt?: number;
  verifiedAt?: number;
  naturalExpiry?: number;
  trustDebtMs?: number;
  /** The split of the trust debt (trust-debt.ts `debtSplit`): end → revoke starts → target refuses → proven. */
  pipelineMs?: number;
  revokeMs?: number;
  proofMs?: number;
  /** End → the target refuses it: how long it was really usable after its task. */
  exposureMs?: number;
  avoidedDebtMs?: number;
  /** Age of the debt while the credential is no longer needed and not yet proven rejected (trust-debt.ts `openDebt`). */
  openDebtMs?: number;
  verifyAttempts: number;
  lastError?: string;
}

export interface DenialRow {
  taskId: string;
  workload?: string;
  code: string;
  message: string;
  requestedAt: number;
}

export interface Report {
  generatedAt: number;
  filter: ReportFilter;
  leases: number;
  /** Leases closed or denied / still in progress. */
  leasesByState: Record<string, number>;
  /** The same figures the demo and the dashboard print (one function computes them all). */
  summary: DebtSummary;
  totals: {
    trustDebtMs: number;
    avoidedDebtMs: number;
    openDebtMs: number;
    verifyAttempts: number;
    stillValid: number;
  };
  /** Worst debt first: proven debt or, while open, the debt accrued so far. */
  credentials: CredentialRow[];
  /**
   * Credentials no longer needed (task ended, or lease expired without a `Task Ended`) and not yet
   * proven rejected, oldest first: the reaper's figure (trust-debt.ts `openDebt`). Includes every
   * such credential in the ledger (matching workload/target), even when its lease predates the window.
   */
  openDebt: { count: number; oldestMs?: number; items: CredentialRow[] };
  denials: { total: number; byReason: Array<{ code: string; count: number }>; items: DenialRow[] };
  /** Peak over the window (from `since` up to `until` or now) and the value now, per workload. */
  blastRadius: WorkloadBlastRadius[];
}

export interface BuildReportOptions {
  now: number;
  filter?: ReportFilter;
  /**
   * Every not-yet-verified credential in the ledger (`Ledger.listOpen`), so open debt and the
   * blast radius "now" see credentials whose lease was requested before the window.
   */
  openCredentials?: readonly CredentialRecord[];
}

const credKey = (c: Pick<CredentialRecord, 'taskId' | 'grant'>) => `${c.taskId}\u0000${grantKey(c.grant)}`;

export function credentialRow(c: CredentialRecord, now: number, lease?: LeaseRecord): CredentialRow {
  const split = debtSplit(c);
  return {
    taskId: c.taskId,
    grant: grantKey(c.grant),
    target: c.target,
    kind: c.kind,
    workload: c.workload,
    state: c.state,
    issuedAt: c.issuedAt,
    endedAt: c.endedAt,
    endedAtSource: lease?.endedAtSource,
    endedAtClamped: lease?.endedAtClamped,
    revokeStartedAt: c.revokeStartedAt,
    revokedAt: c.revokedAt,
    verifiedAt: c.verifiedAt,
    naturalExpiry: c.naturalExpiry,
    trustDebtMs: c.trustDebtMs,
    pipelineMs: split.pipelineMs,
    revokeMs: split.revokeMs,
    proofMs: split.proofMs,
    exposureMs: split.exposureMs,
    avoidedDebtMs: c.avoidedDebtMs,
    openDebtMs: openDebt(c, now),
    verifyAttempts: c.verifyAttempts,
    lastError: c.lastError,
  };
}

/** Debt to rank by: proven debt, or the open debt so far; -1 for a credential still in use. */
const rankDebt = (r: CredentialRow) => r.trustDebtMs ?? r.openDebtMs ?? -1;

export const leaseMatches = (lease: LeaseRecord, f: ReportFilter) =>
  (f.workload === undefined || lease.workload === f.workload) &&
  (f.target === undefined || lease.grants.some((g) => g.target === f.target)) &&
  (f.since === undefined || lease.requestedAt >= f.since) &&
  (f.until === undefined || lease.requestedAt <= f.until);

export const credMatches = (c: CredentialRecord, f: ReportFilter) =>
  (f.workload === undefined || c.workload === f.workload) && (f.target === undefined || c.target === f.target);

/** The whole report from ledger records: pure, so tests can check every figure by hand. */
export function buildReport(all: readonly LeaseWithCredentials[], options: BuildReportOptions): Report {
  const { now } = options;
  const filter = options.filter ?? {};
  const leases = all.filter((l) => leaseMatches(l.lease, filter));
  const creds = leases.flatMap((l) => l.credentials.filter((c) => credMatches(c, filter)));

  // Open debt and "now" need every unfinished credential, not only those of leases in the window.
  const current = new Map(creds.map((c) => [credKey(c), c]));
  for (const c of options.openCredentials ?? []) {
    if (credMatches(c, filter) && !current.has(credKey(c))) current.set(credKey(c), c);
  }
  const currentCreds = [...current.values()];

  const leaseOf = new Map(all.map((l) => [l.lease.taskId, l.lease]));
  const rows = creds
    .map((c) => credentialRow(c, now, leaseOf.get(c.taskId)))
    .sort((a, b) => rankDebt(b) - rankDebt(a) || a.taskId.localeCompare(b.taskId) || a.grant.localeCompare(b.grant));
  const open = currentCreds
    .map((c) => credentialRow(c, now, leaseOf.get(c.taskId)))
    .filter((r) => r.openDebtMs !== undefined)
    .sort((a, b) => (b.openDebtMs as number) - (a.openDebtMs as number) || a.taskId.localeCompare(b.taskId));

  const denied = leases
    .filter((l) => l.lease.denial !== undefined)
    .map(({ lease }) => ({
      taskId: lease.taskId,
      workload: lease.workload,
      code: lease.denial?.code ?? '',
      message: lease.denial?.message ?? '',
      requestedAt: lease.requestedAt,
    }))
    .sort((a, b) => a.requestedAt - b.requestedAt || a.taskId.localeCompare(b.taskId));
  const reasons = new Map<string, number>();
  for (const d of denied) reasons.set(d.code, (reasons.get(d.code) ?? 0) + 1);

  const leasesByState: Record<string, number> = {};
  for (const { lease } of leases) leasesByState[lease.state] = (leasesByState[lease.state] ?? 0) + 1;

  const sum = (xs: Array<number | undefined>) => xs.reduce<number>((s, x) => s + (x ?? 0), 0);
  return {
    generatedAt: now,
    filter: { ...filter },
    leases: leases.length,
    leasesByState,
    summary: summarizeDebt(creds),
    totals: {
      trustDebtMs: sum(creds.map((c) => (c.state === 'verified' ? c.trustDebtMs : undefined))),
      avoidedDebtMs: sum(creds.map((c) => (c.state === 'verified' ? c.avoidedDebtMs : undefined))),
      openDebtMs: sum(open.map((r) => r.openDebtMs)),
      verifyAttempts: sum(creds.map((c) => c.verifyAttempts)),
      stillValid: creds.filter((c) => c.state === 'still-valid').length,
    },
    credentials: rows,
    openDebt: { count: open.length, oldestMs: open[0]?.openDebtMs, items: open },
    denials: {
      total: denied.length,
      byReason: [...reasons].map(([code, count]) => ({ code, count })).sort((a, b) => b.count - a.count || a.code.localeCompare(b.code)),
      items: denied,
    },
    blastRadius: blastRadius(currentCreds, { now, since: filter.since, until: filter.until }),
  };
}

/**
 * What a report needs from the ledger: the leases in the window, and (only when there is a
 * window, which can leave out older leases) every unfinished credential from the open index.
 */
export async function readReportInputs(
  ledger: Ledger,
  filter: ReportFilter,
): Promise<{ leases: LeaseWithCredentials[]; openCredentials: CredentialRecord[] }> {
  const windowed = filter.since !== undefined || filter.until !== undefined;
  const [leases, openCredentials] = await Promise.all([
    ledger.listLeases({ since: filter.since, until: filter.until, workload: filter.workload }),
    windowed ? listUnverifiedCredentials(ledger) : [],
  ]);
  return { leases, openCredentials };
}

/** Reads what a report needs from the ledger and builds it. */
export async function loadReport(ledger: Ledger, filter: ReportFilter = {}, now = Date.now()): Promise<Report> {
  const { leases, openCredentials } = await readReportInputs(ledger, filter);
  return buildReport(leases, { now, filter, openCredentials });
}
