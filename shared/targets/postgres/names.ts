import { createHash } from 'node:crypto';
import type { Grant } from '../../events/schemas.ts';

export const POSTGRES_KIND = 'postgres';

/** PostgreSQL's NAMEDATALEN − 1. */
export const MAX_IDENTIFIER_LENGTH = 63;
/** The hash part of a role name: at least 128 bits, at most 160. */
const MIN_HASH_HEX = 32;
const MAX_HASH_HEX = 40;
/** The longest role prefix that still leaves room for the shortest hash. */
export const MAX_PREFIX_LENGTH = MAX_IDENTIFIER_LENGTH - MIN_HASH_HEX;

function hashLength(prefix: string): number {
  return Math.min(MAX_HASH_HEX, MAX_IDENTIFIER_LENGTH - prefix.length);
}

/** Deterministic role name: prefix + hex(sha256(task, grant)). Never contains task text. */
export function roleNameFor(prefix: string, taskId: string, grant: Grant): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(['tasklease/postgres/v1', taskId, grant.target, grant.access]))
    .digest('hex');
  return prefix + digest.slice(0, hashLength(prefix));
}

/** Matches exactly the role names {@link roleNameFor} makes with this prefix. */
export function managedRolePattern(prefix: string): RegExp {
  // The prefix schema allows only [a-z0-9_]: nothing to escape.
  return new RegExp(`^${prefix}[0-9a-f]{${hashLength(prefix)}}$`);
}
