import { createHash, randomBytes } from 'node:crypto';
import type { IssueContext, IssuedCredential } from '../../lease/ports.ts';
import type { RedisAdmin } from './connection.ts';
import { RedisTargetError, wrap } from './errors.ts';
import { CLOSING_RULES } from './settings.ts';
import type { RedisAccess } from './settings.ts';

/** What Redis stores of a password: hex(sha256(password)), given to ACL SETUSER as `#<hash>`. */
export function passwordHash(password: string): string {
  return createHash('sha256').update(password, 'utf8').digest('hex');
}

/**
 * The ACL SETUSER rules of one issue, in order, each one argument (never a command string):
 * `reset` first (no key, channel or command of an earlier user of the name survives, nor its
 * passwords), then `on`, the password as its hash, the level's keys, channels and commands, and
 * the closing `-@admin -@dangerous`.
 */
export function setUserRules(level: RedisAccess, hash: string): string[] {
  return ['reset', 'on', `#${hash}`, ...level.keys, ...level.channels, ...level.commands, ...CLOSING_RULES];
}

/**
 * Creates the task's ACL user (prefix + hash name, random 256-bit password sent as its SHA-256, so
 * the plaintext never reaches the server, its logs or MONITOR) with the level's rules, and saves
 * the aclfile when the server has one: one round trip. A user of that name left by an attempt
 * that crashed before its record is re-keyed by the same command (`reset` drops its passwords).
 *
 * Redis has no ACL expiry: the user lives until it is deleted. The lease's expiresAt is reported
 * as the natural expiry because the reaper, not the server, enforces it.
 */
export async function issueUser(
  admin: RedisAdmin,
  access: Readonly<Record<string, RedisAccess>>,
  ctx: IssueContext,
  user: string,
): Promise<IssuedCredential> {
  const level = Object.hasOwn(access, ctx.grant.access) ? access[ctx.grant.access] : undefined;
  if (!level) {
    throw new RedisTargetError(
      `redis target ${admin.name} has no access named ${JSON.stringify(ctx.grant.access.slice(0, 64))}`,
      undefined,
      false,
    );
  }
  if (!Number.isFinite(ctx.lease.expiresAt)) throw new RedisTargetError('lease expiresAt is not a valid time', undefined, false);
  const password = randomBytes(32).toString('base64url');
  const hash = passwordHash(password);
  const secrets = [password, hash];
  await admin
    .withAdmin(async (redis) => {
      const save = await admin.usesAclFile(redis);
      const batch = redis.multi().call('ACL', 'SETUSER', user, ...setUserRules(level, hash));
      if (save) batch.call('ACL', 'SAVE');
      const results = (await batch.exec()) ?? [];
      const [setErr] = results[0] ?? [new Error('no reply')];
      if (setErr) {
        // The rules were refused as a whole: nothing was created. A refused rule fails the same way again.
        throw wrap('issue', setErr, secrets, true);
      }
      const [saveErr] = results[1] ?? [null];
      if (saveErr) {
        // Not durable: undo, so a failed issue leaves no user a restart or a later save could keep.
        await redis.call('ACL', 'DELUSER', user).catch(() => undefined);
        throw wrap('issue (ACL SAVE)', saveErr, secrets);
      }
    })
    .catch((err: unknown) => {
      throw wrap('issue', err, secrets);
    });
  const { host, port, tls } = admin.settings;
  return {
    secret: { host, port: String(port), tls: String(tls), username: user, password },
    naturalExpiry: ctx.lease.expiresAt,
    // Said on the record: nothing on the server ends this user; the revoke (or the reaper) does.
    metadata: { serverExpiry: 'none' },
  };
}
