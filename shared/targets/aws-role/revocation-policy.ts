import { TargetError } from '../../lease/errors.ts';
import { REVOCATION_POLICY_NAME } from './names.ts';

/*
 * The revocation policy: an STS session cannot be deleted, so revoking one adds a Deny for exactly
 * that session (`aws:userid` = `<role id>:<session name>`) to the role's inline policy
 * `tasklease-revocations`. Entries are grouped by the minute their session expires (the `Sid`
 * carries it) and pruned once that minute has passed, since the session is dead anyway.
 *
 * The budget is not ours alone: IAM's 10,240 characters (whitespace not counted) are for ALL
 * inline policies of the role together, so the caller passes what the role's other inline
 * policies leave (revoke.ts measures them). Expired entries are compacted first. If the live ones
 * still do not fit, all per-session entries are replaced by one role-wide cutoff: Deny every
 * tasklease session of this role (`aws:userid` like `<role id>:tl.*`) whose `aws:TokenIssueTime`
 * is before now. That is always small enough to write, and covers every entry it replaces (each
 * was issued before it was revoked, so before now) — but it COSTS: every other live tasklease
 * session on that role is revoked too, mid-task (their tasks fail and must ask again; sessions
 * of the role that are not tasklease's are untouched). The ledger keeps those leases open until
 * their own end, whose revoke finds them already covered and whose verify proves them rejected.
 * A deliberate trade of availability for a revocation that can always be written. The cutoff is
 * pruned once every session issued before it has expired.
 */

/** Slack for clock differences before an expired session's deny is pruned. */
const PRUNE_GRACE_MS = 5 * 60_000;
const BUCKET_SECONDS = 60;

export interface PolicyStatement {
  Sid?: string;
  Effect: string;
  Action?: string | string[];
  Resource?: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
  [key: string]: unknown;
}
export interface PolicyDocument {
  Version: string;
  Statement: PolicyStatement[];
}

const SESSION_SID = /^TL(\d{10,})$/;
const CUTOFF_SID = /^TLCUT(\d{10,})$/;

/** A policy document's text: GetRolePolicy returns it URL-encoded (RFC 3986), PutRolePolicy takes it plain. */
function decodePolicyText(text: string): string {
  return /^\s*[{[]/.test(text) ? text : decodeURIComponent(text);
}

export function parsePolicyDocument(text: string | undefined): PolicyDocument {
  if (!text) return { Version: '2012-10-17', Statement: [] };
  const doc = JSON.parse(decodePolicyText(text)) as Partial<PolicyDocument>;
  const statements = Array.isArray(doc.Statement) ? doc.Statement : doc.Statement ? [doc.Statement as PolicyStatement] : [];
  return { Version: doc.Version ?? '2012-10-17', Statement: statements };
}

/**
 * The characters IAM counts against the role's inline-policy limit: it ignores whitespace, so a
 * document is measured re-serialised without any (a text that is not JSON: with all whitespace
 * removed). Re-serialising keeps whitespace inside strings, so this errs on the large side.
 */
export function policySize(text: string): number {
  const decoded = decodePolicyText(text);
  try {
    return JSON.stringify(JSON.parse(decoded)).length;
  } catch {
    return decoded.replace(/\s+/g, '').length;
  }
}

const userIdsOf = (s: PolicyStatement): string[] => {
  const v = s.Condition?.StringLike?.['aws:userid'];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
};

const cutoffSecOf = (s: PolicyStatement): number | undefined => {
  const m = CUTOFF_SID.exec(s.Sid ?? '');
  return m ? Number(m[1]) : undefined;
};

/**
 * The revocation policy, even as the role-wide cutoff, does not fit what the role's inline-policy
 * budget leaves. Not retryable: only an operator can make room (the message says how much).
 */
export class RevocationBudgetError extends TargetError {
  constructor(
    message: string,
    /** Characters the smallest document (the cutoff) needs. */
    readonly neededChars: number,
    /** Characters the budget left for it. */
    readonly budgetChars: number,
  ) {
    super(message, { retryable: false });
  }
}

export interface RevocationChange {
  document: PolicyDocument;
  /** The document differs from the input (something added or pruned). */
  changed: boolean;
  /** `session`: a per-session deny; `cutoff`: the role-wide fallback; `present`: already denied. */
  mode: 'session' | 'cutoff' | 'present';
  pruned: number;
  /** mode `cutoff`: the new cutoff; every tasklease session of the role issued before it is denied. */
  cutoffAt?: number;
  /** mode `cutoff`: per-session entries the cutoff replaced (it covers them). */
  replaced?: number;
}

export interface RevocationOptions {
  now: number;
  /** What IAM leaves for this document: the role's limit minus its other inline policies. */
  maxChars: number;
  maxSessionMs: number;
  /**
   * The `aws:userid` pattern of tasklease's sessions of this role (`<role id>:tl.*`), scoping the
   * cutoff to them; without it the cutoff denies every session of the role.
   */
  sessionPattern?: string;
  /** Write the cutoff even if the entries fit (IAM answered LimitExceeded to them). */
  forceCutoff?: boolean;
}

/**
 * Adds a deny for one session (`aws:userid`) to the revocation document, pruning entries of
 * sessions that have expired; falls back to a role-wide `aws:TokenIssueTime` cutoff when the
 * document would exceed `maxChars` (or `forceCutoff`). Throws {@link RevocationBudgetError}
 * when not even the cutoff fits. Pure: the caller reads and writes IAM.
 */
export function addSessionDeny(
  input: PolicyDocument,
  /** `issuedAt`: by STS's clock (Expiration − DurationSeconds), when known. */
  session: { userId: string; expiresAt: number; issuedAt?: number },
  options: RevocationOptions,
): RevocationChange {
  const { now } = options;
  let pruned = 0;
  const kept = input.Statement.filter((s) => {
    const bucket = SESSION_SID.exec(s.Sid ?? '');
    const cutoffSec = cutoffSecOf(s);
    const expired =
      (bucket !== null && Number(bucket[1]) * 1000 + PRUNE_GRACE_MS < now) ||
      (cutoffSec !== undefined && cutoffSec * 1000 + options.maxSessionMs + PRUNE_GRACE_MS < now);
    if (expired) pruned++;
    return !expired;
  });
  const size = (doc: PolicyDocument) => JSON.stringify(doc).length;
  const compacted: PolicyDocument = { Version: '2012-10-17', Statement: kept };
  // Already denied: by its own entry, or by a cutoff later than its issue (a session a cutoff
  // took down with another). Only compaction may be left to write.
  const covered =
    kept.some((s) => SESSION_SID.test(s.Sid ?? '') && userIdsOf(s).includes(session.userId)) ||
    (session.issuedAt !== undefined && kept.some((s) => (cutoffSecOf(s) ?? 0) * 1000 > session.issuedAt!));
  if (covered && !options.forceCutoff) {
    return { document: compacted, changed: pruned > 0, mode: 'present', pruned };
  }

  const bucketSec = Math.ceil(session.expiresAt / 1000 / BUCKET_SECONDS) * BUCKET_SECONDS;
  const sid = `TL${bucketSec}`;
  if (!options.forceCutoff) {
    const existing = kept.find((s) => s.Sid === sid);
    const statements = existing
      ? kept.map((s) => (s === existing ? denyStatement(sid, [...userIdsOf(s), session.userId]) : s))
      : [...kept, denyStatement(sid, [session.userId])];
    statements.sort((a, b) => (a.Sid ?? '').localeCompare(b.Sid ?? ''));
    const document: PolicyDocument = { Version: '2012-10-17', Statement: statements };
    if (size(document) <= options.maxChars) return { document, changed: true, mode: 'session', pruned };
  }

  // Too many live revocations for the budget: one statement denying every tasklease session of
  // the role issued before now, rounded up (a session issued in this very second is covered).
  // It replaces the per-session entries (each was issued before now) and any older cutoff.
  const nowSec = Math.ceil(now / 1000) + 1;
  const foreign = kept.filter((s) => !SESSION_SID.test(s.Sid ?? '') && !CUTOFF_SID.test(s.Sid ?? ''));
  const replaced = kept.filter((s) => SESSION_SID.test(s.Sid ?? '')).reduce((n, s) => n + userIdsOf(s).length, 0);
  const cutoff: PolicyStatement = {
    Sid: `TLCUT${nowSec}`,
    Effect: 'Deny',
    Action: '*',
    Resource: '*',
    Condition: {
      DateLessThan: { 'aws:TokenIssueTime': new Date(nowSec * 1000).toISOString().replace('.000Z', 'Z') },
      ...(options.sessionPattern ? { StringLike: { 'aws:userid': options.sessionPattern } } : {}),
    },
  };
  const result = (document: PolicyDocument): RevocationChange => ({
    document,
    changed: true,
    mode: 'cutoff',
    pruned,
    cutoffAt: nowSec * 1000,
    replaced,
  });
  // This session's own deny too when there is room, so it is covered whatever the clocks say.
  const withOwn: PolicyDocument = { Version: '2012-10-17', Statement: [...foreign, cutoff, denyStatement(sid, [session.userId])] };
  if (size(withOwn) <= options.maxChars) return result(withOwn);
  const bare: PolicyDocument = { Version: '2012-10-17', Statement: [...foreign, cutoff] };
  if (size(bare) <= options.maxChars) return result(bare);
  throw new RevocationBudgetError(
    `inline policy ${REVOCATION_POLICY_NAME} needs ${size(bare)} characters even as a role-wide cutoff` +
      (foreign.length ? ` (${foreign.length} statements in it are not tasklease's: remove them)` : '') +
      `, but only ${Math.max(0, options.maxChars)} are left`,
    size(bare),
    options.maxChars,
  );
}

function denyStatement(sid: string, userIds: string[]): PolicyStatement {
  return {
    Sid: sid,
    Effect: 'Deny',
    Action: '*',
    Resource: '*',
    Condition: { StringLike: { 'aws:userid': [...new Set(userIds)].sort() } },
  };
}
