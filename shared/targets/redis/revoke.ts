import type { Redis } from 'ioredis';
import type { RevokeContext } from '../../lease/ports.ts';
import { clientsOf } from './connection.ts';
import type { RedisAdmin } from './connection.ts';
import { RedisTargetError, sleep, wrap } from './errors.ts';

/** CLIENT KILL USER of a user that does not exist (never issued, or deleted already): nothing to kill. */
const NO_SUCH_USER = /no such user/i;

/**
 * Makes the task's user unusable and ends what it opened, in one MULTI/EXEC (nothing runs between
 * its commands, so no login slips in): CLIENT KILL USER (every connection authenticated as it),
 * ACL DELUSER (which would close them too; the kill makes it not depend on that), ACL SAVE when
 * the server has an aclfile (else a restart reloads the file and the user is back), CLIENT LIST to
 * see that none is left. Idempotent: a user already gone deletes 0 and has nothing to kill. Every
 * failure is retryable, a revocation is never abandoned; a failed ACL SAVE fails the revoke.
 */
export async function revokeUser(admin: RedisAdmin, _ctx: RevokeContext, user: string): Promise<void> {
  try {
    await admin.withAdmin(async (redis) => {
      const save = await admin.usesAclFile(redis);
      const batch = redis.multi().call('CLIENT', 'KILL', 'USER', user).call('ACL', 'DELUSER', user);
      if (save) batch.call('ACL', 'SAVE');
      batch.call('CLIENT', 'LIST');
      const results = (await batch.exec()) ?? [];
      if (results.length !== (save ? 4 : 3)) throw new RedisTargetError('redis revoke: the transaction was discarded');
      const [killErr] = results[0]!;
      if (killErr && !NO_SUCH_USER.test(String((killErr as Error).message))) throw killErr;
      for (const [err] of results.slice(1)) if (err) throw err;
      const list = results[results.length - 1]![1];
      await awaitClientsGone(admin, redis, user, clientsOf(String(list), user));
    });
  } catch (err) {
    const wrapped = wrap('revoke', err);
    throw wrapped instanceof RedisTargetError && !wrapped.retryable
      ? new RedisTargetError(wrapped.message, wrapped.replyCode, true)
      : wrapped;
  }
}

/**
 * Kills and re-reads until CLIENT LIST shows no client of the user, or fails retryably at the
 * drain timeout. Without a listed client it returns at once: the common case costs nothing.
 */
export async function awaitClientsGone(admin: RedisAdmin, redis: Redis, user: string, first: string[]): Promise<void> {
  const timeoutMs = admin.settings.sessionDrainTimeoutMs;
  const deadline = Date.now() + timeoutMs;
  let ids = first;
  let pause = 1;
  while (ids.length > 0) {
    if (Date.now() >= deadline)
      throw new RedisTargetError(`redis revoke: ${ids.length} clients of ${user} still open after ${timeoutMs} ms`);
    const batch = redis.multi();
    for (const id of ids) batch.call('CLIENT', 'KILL', 'ID', id);
    batch.call('CLIENT', 'LIST');
    const results = (await batch.exec()) ?? [];
    await sleep(pause);
    pause = Math.min(pause * 2, 50);
    ids = clientsOf(String(results[results.length - 1]?.[1] ?? ''), user);
  }
}
