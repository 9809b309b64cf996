import { createHash } from 'node:crypto';
import { grantKey } from '../events/schemas.ts';
import type { Grant } from '../events/schemas.ts';

/*
 * The name a delivered secret gets: `tasklease/<task>/<target>.<access>`. Secrets Manager names
 * allow only A-Za-z0-9 /_+=.@- (up to 512), while task ids are any printable text, so the task
 * segment is the id itself when it is made of the safe characters below, and otherwise a readable
 * form (every other character replaced by `-`) plus `=` and a hash of the whole id. The two forms
 * cannot meet: a passthrough segment never holds `=`, an encoded one always does, and two encoded
 * ones are equal only when their ids' hashes are. Names are derived, never random, so a crashed
 * issue can find what it delivered.
 */

/** Task ids used as they are: the old contract's characters (`:` excepted, which Secrets Manager refuses). */
const PASSTHROUGH = /^[A-Za-z0-9][A-Za-z0-9._@-]*$/;
const UNSAFE = /[^A-Za-z0-9._@-]/gu;
/** 80 bits of SHA-256: a collision needs ~2^40 ids chosen for it. */
const HASH_HEX = 20;

export function secretTaskSegment(taskId: string): string {
  if (PASSTHROUGH.test(taskId)) return taskId;
  const hash = createHash('sha256').update(`tasklease/secret-name/v1\0${taskId}`).digest('hex').slice(0, HASH_HEX);
  return `${taskId.replace(UNSAFE, '-')}=${hash}`;
}

export const secretNameFor = (taskId: string, grant: Grant): string => `tasklease/${secretTaskSegment(taskId)}/${grantKey(grant)}`;
