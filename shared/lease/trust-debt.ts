import type { CredentialRecord } from './records.ts';

/** DESIGN §7: usable-after-need time of one verified credential. */
export function trustDebtMs(verifiedAt: number, endedAt: number): number {
  return verifiedAt - endedAt;
}

/** DESIGN §7: what TTL-only expiry would have left open after we proved the credential dead. */
export function avoidedDebtMs(naturalExpiry: number | undefined, verifiedAt: number): number | undefined {
  return naturalExpiry === undefined ? undefined : naturalExpiry - verifiedAt;
}

/** Debt still accruing: a credential whose task ended and that is not yet proven rejected. */
export function openDebtMs(cred: Pick<CredentialRecord, 'state' | 'endedAt'>, now: number): number | undefined {
  if (cred.state === 'verified' || cred.endedAt === undefined) return undefined;
  return Math.max(0, now - cred.endedAt);
}

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
  const ttlOnly = creds.flatMap((c) =>
    c.naturalExpiry !== undefined && c.endedAt !== undefined ? [c.naturalExpiry - c.endedAt] : [],
  );
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
