import { createHash } from 'node:crypto';
import type { Grant } from '../../events/schemas.ts';

export const RABBITMQ_KIND = 'rabbitmq';

/** The hash part of a user name: 160 bits of sha256 (hex). */
const HASH_HEX = 40;
export const MAX_PREFIX_LENGTH = 32;

/** Deterministic user name: prefix + hex(sha256(task, grant)). Never contains task text. */
export function userNameFor(prefix: string, taskId: string, grant: Grant): string {
  const digest = createHash('sha256')
    .update(JSON.stringify(['tasklease/rabbitmq/v1', taskId, grant.target, grant.access]))
    .digest('hex');
  return prefix + digest.slice(0, HASH_HEX);
}

/** Matches exactly the user names {@link userNameFor} makes with this prefix. */
export function managedUserPattern(prefix: string): RegExp {
  const escaped = prefix.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  return new RegExp(`^${escaped}[0-9a-f]{${HASH_HEX}}$`);
}
