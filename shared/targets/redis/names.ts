import { createHash } from 'node:crypto';
import type { Grant } from '../../events/schemas.ts';

export const REDIS_KIND = 'redis';

/** The longest user prefix: Redis has no user-name limit, but names should stay readable in CLIENT LIST and ACL LOG. */
export const MAX_PREFIX_LENGTH = 32;
/** The hash part of a user name: 160 bits. */
const HASH_HEX = 40;

/** Deterministic ACL user name: prefix + hex(sha256(task, grant)). Never contains task text. */
export function userNameFor(prefix: string, taskId: string, grant: Grant): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(['tasklease/redis/v1', taskId, grant.target, grant.access]))
    .digest('hex');
  return prefix + digest.slice(0, HASH_HEX);
}

/** Matches exactly the user names {@link userNameFor} makes with this prefix. */
export function managedUserPattern(prefix: string): RegExp {
  // The prefix schema allows only [a-z0-9_-]: nothing a RegExp reads specially outside a class.
  return new RegExp(`^${prefix}[0-9a-f]{${HASH_HEX}}$`);
}
