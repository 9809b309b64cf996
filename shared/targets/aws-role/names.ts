import { createHash } from 'node:crypto';
import type { Grant } from '../../events/schemas.ts';

export const AWS_ROLE_KIND = 'aws-role';
/** The tag a role must carry before the broker assumes it or edits its policies. */
export const MANAGED_TAG = { key: 'tasklease:managed', value: 'true' } as const;
/** The broker-managed inline policy holding per-session denies. */
export const REVOCATION_POLICY_NAME = 'tasklease-revocations';
/** The Sid of the statement each session policy gets so the session may make its revocation probe. */
export const PROBE_STATEMENT_SID = 'TaskleaseRevocationProbe';

const SESSION_NAME_MAX = 64;
const SESSION_HASH_HEX = 16;
/** Every session tasklease names starts so (the role-wide cutoff matches it). */
export const SESSION_NAME_PREFIX = 'tl.';
const STS_NAME_CHARS = /[^\w+=,.@-]/g;

/** An IAM role ARN: partition, account and role name (the path may hold any printable ASCII). */
export const ROLE_ARN = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:[\x21-\x7e]*\/)?([\w+=,.@-]{1,64})$/;

const sha256 = (...parts: string[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('hex');

/** `tl.<task id>.<16 hex>`: readable in CloudTrail, unique per (task, grant), ≤ 64 chars of [\w+=,.@-]. */
export function sessionNameFor(taskId: string, grant: Grant): string {
  const hash = sha256('tasklease/aws-role/v1', taskId, grant.target, grant.access).slice(0, SESSION_HASH_HEX);
  const room = SESSION_NAME_MAX - SESSION_NAME_PREFIX.length - 1 - SESSION_HASH_HEX;
  return `${SESSION_NAME_PREFIX}${taskId.replace(STS_NAME_CHARS, '-').slice(0, room)}.${hash}`;
}

/**
 * `<last path segment>@<trust domain>+<12 hex of the SPIFFE ID>`, within SourceIdentity's limits
 * (2–64 chars of [\w+=,.@-], not starting with `aws:`). The readable part may be cut or mapped;
 * the hash keeps it unambiguous.
 */
export function sourceIdentityFor(spiffeId: string): string {
  const m = /^spiffe:\/\/([^/]+)(\/.*)?$/.exec(spiffeId);
  const trustDomain = m?.[1] ?? 'unknown';
  const last = (m?.[2] ?? '').split('/').filter(Boolean).pop() ?? '';
  const readable = `${last}@${trustDomain}`.replace(STS_NAME_CHARS, '_').slice(0, 64 - 1 - 12);
  return `${readable}+${sha256('tasklease/source-identity/v1', spiffeId).slice(0, 12)}`;
}
