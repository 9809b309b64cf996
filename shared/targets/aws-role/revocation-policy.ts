import { TargetError } from '../../lease/errors.ts';
import { REVOCATION_POLICY_NAME } from './names.ts';

/*
 * The revocation policy: an STS session cannot be deleted, so revoking one adds a Deny for exactly
 * that session (`aws:userid` = `<role id>:<session name>`) to the role's inline policy
 * `tasklease-revocations`. Entries are grouped by the minute their session expires (the `Sid`
 * carries it) and pruned once that minute has passed, since the session is dead anyway. If the
 * document would still exceed IAM's 10,240-character limit, all per-session entries are replaced
 * by one role-wide Deny on `aws:TokenIssueTime` before now — which also ends every other live
 * session of this role (their tasks must ask again): a deliberate trade of availability for
 * revocation that can always be written. That statement is pruned once every session issued
 * before it has expired.
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

export function parsePolicyDocument(text: string | undefined): PolicyDocument {
  if (!text) return { Version: '2012-10-17', Statement: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // GetRolePolicy returns the document URL-encoded (RFC 3986).
    parsed = JSON.parse(decodeURIComponent(text));
  }
  const doc = parsed as Partial<PolicyDocument>;
  const statements = Array.isArray(doc.Statement) ? doc.Statement : doc.Statement ? [doc.Statement as PolicyStatement] : [];
  return { Version: doc.Version ?? '2012-10-17', Statement: statements };
}

const userIdsOf = (s: PolicyStatement): string[] => {
  const v = s.Condition?.StringLike?.['aws:userid'];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
};

export interface RevocationChange {
  document: PolicyDocument;
  /** The document differs from the input (something added or pruned). */
  changed: boolean;
  /** `session`: a per-session deny; `cutoff`: the role-wide fallback; `present`: already denied. */
  mode: 'session' | 'cutoff' | 'present';
  pruned: number;
}

/**
 * Adds a deny for one session (`aws:userid`) to the revocation document, pruning entries of
 * sessions that have expired; falls back to a role-wide `aws:TokenIssueTime` cutoff when the
 * document would exceed `maxChars`. Pure: the caller reads and writes IAM.
 */
export function addSessionDeny(
  input: PolicyDocument,
  session: { userId: string; expiresAt: number },
  options: { now: number; maxChars: number; maxSessionMs: number },
): RevocationChange {
  const { now } = options;
  let pruned = 0;
  const kept = input.Statement.filter((s) => {
    const bucket = SESSION_SID.exec(s.Sid ?? '');
    const cutoff = CUTOFF_SID.exec(s.Sid ?? '');
    const expired =
      (bucket !== null && Number(bucket[1]) * 1000 + PRUNE_GRACE_MS < now) ||
      (cutoff !== null && Number(cutoff[1]) * 1000 + options.maxSessionMs + PRUNE_GRACE_MS < now);
    if (expired) pruned++;
    return !expired;
  });
  if (kept.some((s) => SESSION_SID.test(s.Sid ?? '') && userIdsOf(s).includes(session.userId))) {
    return { document: { Version: '2012-10-17', Statement: kept }, changed: pruned > 0, mode: 'present', pruned };
  }

  const bucketSec = Math.ceil(session.expiresAt / 1000 / BUCKET_SECONDS) * BUCKET_SECONDS;
  const sid = `TL${bucketSec}`;
  const existing = kept.find((s) => s.Sid === sid);
  const statements = existing
    ? kept.map((s) => (s === existing ? denyStatement(sid, [...userIdsOf(s), session.userId]) : s))
    : [...kept, denyStatement(sid, [session.userId])];
  statements.sort((a, b) => (a.Sid ?? '').localeCompare(b.Sid ?? ''));
  const document: PolicyDocument = { Version: '2012-10-17', Statement: statements };
  if (JSON.stringify(document).length <= options.maxChars) return { document, changed: true, mode: 'session', pruned };

  // Too many live revocations: one statement denying every session issued before now, rounded
  // up (a session issued in this very second is covered), plus this session's own deny, so it is
  // covered whatever the clocks say.
  const nowSec = Math.ceil(now / 1000) + 1;
  const others = kept.filter((s) => !SESSION_SID.test(s.Sid ?? '') && !CUTOFF_SID.test(s.Sid ?? ''));
  const cutoff: PolicyStatement = {
    Sid: `TLCUT${nowSec}`,
    Effect: 'Deny',
    Action: '*',
    Resource: '*',
    Condition: { DateLessThan: { 'aws:TokenIssueTime': new Date(nowSec * 1000).toISOString().replace('.000Z', 'Z') } },
  };
  const fallback: PolicyDocument = { Version: '2012-10-17', Statement: [...others, cutoff, denyStatement(sid, [session.userId])] };
  if (JSON.stringify(fallback).length > options.maxChars) {
    throw new TargetError(`inline policy ${REVOCATION_POLICY_NAME} cannot fit even a role-wide deny; remove foreign statements from it`, {
      retryable: false,
    });
  }
  return { document: fallback, changed: true, mode: 'cutoff', pruned };
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
