import { createHash } from 'node:crypto';
import type { Grant } from '../../events/schemas.ts';

export const MYSQL_KIND = 'mysql';

/**
 * MySQL 8's user-name limit. MariaDB allows 80 characters, but a name that fits both lets one
 * config move between them (and RDS for MySQL).
 */
export const MAX_USER_LENGTH = 32;
/** The hash part of a user name: at least 96 bits (birthday bound 2^48 tasks), at most 128. */
const MIN_HASH_HEX = 24;
const MAX_HASH_HEX = 32;
/** The longest user prefix that still leaves room for the shortest hash. */
export const MAX_PREFIX_LENGTH = MAX_USER_LENGTH - MIN_HASH_HEX;

function hashLength(prefix: string): number {
  return Math.min(MAX_HASH_HEX, MAX_USER_LENGTH - prefix.length);
}

/** Deterministic user name: prefix + hex(sha256(task, grant)). Never contains task text. */
export function userNameFor(prefix: string, taskId: string, grant: Grant): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(['tasklease/mysql/v1', taskId, grant.target, grant.access]))
    .digest('hex');
  return prefix + digest.slice(0, hashLength(prefix));
}

/** Matches exactly the user names {@link userNameFor} makes with this prefix. */
export function managedUserPattern(prefix: string): RegExp {
  // The prefix schema allows only [a-z0-9_]: nothing to escape.
  return new RegExp(`^${prefix}[0-9a-f]{${hashLength(prefix)}}$`);
}
