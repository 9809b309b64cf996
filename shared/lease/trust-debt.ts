import type { EndedAtSource } from '../events/schemas.ts';
import type { CredentialRecord } from './records.ts';

/** Usable-after-need time of one verified credential (docs/architecture.md, "Trust debt"). */
export function trustDebtMs(verifiedAt: number, endedAt: number): number {
  return verifiedAt - endedAt;
}

/**
 * Where one credential's trust debt went, in ms (each undefined until both its instants are
 * known). pipeline + revoke + proof = trustDebt; exposure = pipeline + revoke.
 */
export interface DebtSplit {
  /** end → proven rejected (`verifiedAt − endedAt`). */
  trustDebtMs?: number;
  /** end → the broker starts revoking (queueing, delivery, the broker's own reads and writes). */
  pipelineMs?: number;
  /** the broker starts revoking → the target refuses it (`revokedAt`: the driver's revoke returned). */
  revokeMs?: number;
  /** the target refuses it → refusal proven and its secret gone (`verifiedAt`). */
  proofMs?: number;
  /** end → the target refuses it: the time someone holding the credential could really use it. */
  exposureMs?: number;
}

export const DEBT_SPLIT_FIELDS = ['pipelineMs', 'revokeMs', 'proofMs', 'exposureMs'] as const;
export type DebtSplitField = (typeof DEBT_SPLIT_FIELDS)[number];

type SplitInstants = Pick<CredentialRecord, 'endedAt' | 'revokeStartedAt' | 'revokedAt' | 'verifiedAt'>;

/**
 * The one place the trust debt and its split are computed from a credential's instants: the
 * verify step (which stores them on the ledger item), `Lease Revoked`, the report, the dashboard
 * and the metrics all use it.
 */
export function debtSplit(c: SplitInstants): DebtSplit {
  const span = (from: number | undefined, to: number | undefined) => (from === undefined || to === undefined ? undefined : to - from);
  return {
    trustDebtMs: c.verifiedAt === undefined || c.endedAt === undefined ? undefined : trustDebtMs(c.verifiedAt, c.endedAt),
    pipelineMs: span(c.endedAt, c.revokeStartedAt),
    revokeMs: span(c.revokeStartedAt, c.revokedAt),
    proofMs: span(c.revokedAt, c.verifiedAt),
    exposureMs: span(c.endedAt, c.revokedAt),
  };
}

/** When a task ended, as the broker decided it, and from what. */
export interface EndTime {
  endedAt: number;
  source: EndedAtSource;
  /** The engine's own endedAt lay outside what the broker accepts and was moved into it. */
  clamped: boolean;
}

/**
 * The end a `Task Ended` is measured from (docs/architecture.md, "Trust debt"): the engine's own
 * `endedAt` when it is no later than the event's arrival plus the allowed clock skew (an end
 * cannot follow its own event); else the time the event reached the broker's queue (SQS
 * SentTimestamp, the local bus's put time); else the broker's clock. Never after `now`'s skew
 * window, and a queue time from a clock ahead of ours is taken as `now`.
 */
export function endTimeOf(input: { claimed?: string; queuedAt?: number; now: number; skewMs: number }): EndTime {
  const { now, skewMs } = input;
  const queuedAt = input.queuedAt !== undefined && Number.isFinite(input.queuedAt) ? Math.min(input.queuedAt, now) : undefined;
  if (input.claimed !== undefined) {
    const claimed = Date.parse(input.claimed);
    const latest = (queuedAt ?? now) + skewMs;
    if (Number.isFinite(claimed))
      return claimed > latest
        ? { endedAt: latest, source: 'engine', clamped: true }
        : { endedAt: claimed, source: 'engine', clamped: false };
  }
  if (queuedAt !== undefined) return { endedAt: queuedAt, source: 'queue', clamped: false };
  return { endedAt: now, source: 'broker', clamped: false };
}

/**
 * An end never predates the lease's issue (`notBefore`: when it was issued, or requested while
 * still issuing): no credential of it was usable earlier. An engine's end moved here is flagged.
 */
export function notBeforeIssue(end: EndTime, notBefore: number | undefined): EndTime {
  if (notBefore === undefined || end.endedAt >= notBefore) return end;
  return { ...end, endedAt: notBefore, clamped: end.clamped || end.source === 'engine' };
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
  /** Where the proven debt went (debtSplit), over the verified credentials that know both instants. */
  split: Record<DebtSplitField, { p50?: number; p99?: number; max?: number }>;
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
    split: splitSummary(verified),
  };
}

function splitSummary(verified: readonly CredentialRecord[]): DebtSummary['split'] {
  const splits = verified.map(debtSplit);
  const out = {} as DebtSummary['split'];
  for (const field of DEBT_SPLIT_FIELDS) {
    const values = splits.flatMap((s) => (s[field] === undefined ? [] : [s[field]]));
    out[field] = { p50: percentile(values, 50), p99: percentile(values, 99), max: values.length ? Math.max(...values) : undefined };
  }
  return out;
}
