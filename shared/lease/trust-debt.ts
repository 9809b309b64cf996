import type { CredentialRecord } from './records.ts';

/** Usable-after-need time of one verified credential (docs/architecture.md, "Trust debt"). */
export function trustDebtMs(verifiedAt: number, endedAt: number): number {
  return verifiedAt - endedAt;
}

/** What TTL-only expiry would have left open after we proved the credential dead. */
export function avoidedDebtMs(naturalExpiry: number | undefined, verifiedAt: number): number | undefined {
  return naturalExpiry === undefined ? undefined : naturalExpiry - verifiedAt;
}

/**
 * When a credential stopped being needed, if it is not yet proven rejected: its task's end or,
 * for a credential still `issued` past its lease's expiry, that expiry (a lost `Task Ended`: an
 * issued credential is due at its lease's expiry, transitions.ts). Undefined while it is in use.
 */
export function openDebtSince(cred: Pick<CredentialRecord, 'state' | 'endedAt' | 'nextCheckAt'>, now: number): number | undefined {
  if (cred.state === 'verified') return undefined;
  if (cred.endedAt !== undefined) return cred.endedAt;
  if (cred.state === 'issued' && cred.nextCheckAt !== undefined && cred.nextCheckAt <= now) return cred.nextCheckAt;
  return undefined;
}

/**
 * Open debt: how long a credential has been usable without being needed, while not yet proven
 * rejected. The one definition behind the reaper's measurement (and the metric it publishes),
 * `Revocation Failed`, the report and the dashboard.
 */
export function openDebt(cred: Pick<CredentialRecord, 'state' | 'endedAt' | 'nextCheckAt'>, now: number): number | undefined {
  const since = openDebtSince(cred, now);
  return since === undefined ? undefined : Math.max(0, now - since);
}

/** @deprecated the former name of {@link openDebt}, which now also counts a lost `Task Ended`. */
export const openDebtMs = openDebt;

/** Nearest-rank percentile (p in 0..100) of `values`; undefined for an empty list. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface DebtSummary {
  credentials: number;
  verifiedRejected: number;
  open: number;
  trustDebtMs: { p50?: number; p90?: number; p99?: number; max?: number };
  avoidedDebtMs: { p50?: number; min?: number };
  /** Sum of (naturalExpiry − endedAt): the debt TTL-only expiry would have carried. */
  ttlOnlyDebtMs: { p50?: number; p99?: number };
}

/** Headline figures over a set of credential records: used by the demo, report and dashboard alike. */
export function summarizeDebt(creds: readonly CredentialRecord[]): DebtSummary {
  const verified = creds.filter((c) => c.state === 'verified' && c.trustDebtMs !== undefined);
  const debts = verified.map((c) => c.trustDebtMs as number);
  const avoided = verified.flatMap((c) => (c.avoidedDebtMs === undefined ? [] : [c.avoidedDebtMs]));
  const ttlOnly = creds.flatMap((c) => (c.naturalExpiry !== undefined && c.endedAt !== undefined ? [c.naturalExpiry - c.endedAt] : []));
  return {
    credentials: creds.length,
    verifiedRejected: verified.length,
    open: creds.filter((c) => c.state !== 'verified').length,
    trustDebtMs: {
      p50: percentile(debts, 50),
      p90: percentile(debts, 90),
      p99: percentile(debts, 99),
      max: debts.length ? Math.max(...debts) : undefined,
    },
    avoidedDebtMs: { p50: percentile(avoided, 50), min: avoided.length ? Math.min(...avoided) : undefined },
    ttlOnlyDebtMs: { p50: percentile(ttlOnly, 50), p99: percentile(ttlOnly, 99) },
  };
}
