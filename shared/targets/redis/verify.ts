import type { Redis } from 'ioredis';
import type { VerifyContext, VerifyResult } from '../../lease/ports.ts';
import { clientsOf, connectionOptions, openConnection } from './connection.ts';
import type { RedisAdmin } from './connection.ts';
import { replyCodeOf } from './errors.ts';

/** What the server shows of a user name, in one round trip. */
export interface UserState {
  /** Client ids CLIENT LIST shows authenticated as the user. */
  clients: string[];
  /** Whether the ACL user exists, and is `on`. */
  exists: boolean;
  enabled: boolean;
}

/**
 * Proves the credential dead: AUTH with the old password on a fresh connection is refused with
 * WRONGPASS, and CLIENT LIST shows no client of the user. Without the password the user must be
 * gone (a disabled leftover is a half-done revoke: inconclusive; an enabled one is a live credential).
 */
export async function verifyUser(admin: RedisAdmin, ctx: VerifyContext, user: string): Promise<VerifyResult> {
  const password = ctx.secret?.password;
  try {
    // The login and the look are one job: with the login's connection it counts against adminConcurrency.
    return await admin.withAdmin(async (redis) => {
      if (password) {
        const login = await admin.tryLogin(ctx.secret ?? {}, user, password);
        if (login !== 'refused') return login;
      }
      let state: UserState;
      try {
        state = await userState(redis, user);
      } catch {
        return 'inconclusive';
      }
      if (state.clients.length > 0) return 'still-valid';
      if (password || !state.exists) return 'rejected';
      return state.enabled ? 'still-valid' : 'inconclusive';
    });
  } catch {
    // No admin connection: nothing is proven either way.
    return 'inconclusive';
  }
}

export async function userState(redis: Redis, user: string): Promise<UserState> {
  const results = (await redis.pipeline().call('CLIENT', 'LIST').call('ACL', 'GETUSER', user).exec()) ?? [];
  const [[listErr, list] = [new Error('no reply'), null], [userErr, acl] = [new Error('no reply'), null]] = results;
  if (listErr) throw listErr;
  if (userErr) throw userErr;
  const flags = Array.isArray(acl) ? (acl as unknown[])[(acl as unknown[]).indexOf('flags') + 1] : undefined;
  return {
    clients: clientsOf(String(list), user),
    exists: acl !== null,
    enabled: Array.isArray(flags) && flags.includes('on'),
  };
}

/** 'refused' means the server answered AUTH with WRONGPASS; anything else proves nothing. */
export async function tryLogin(
  admin: RedisAdmin,
  secret: Record<string, string>,
  user: string,
  password: string,
): Promise<'refused' | 'still-valid' | 'inconclusive'> {
  const { settings } = admin;
  const port = Number(secret.port ?? settings.port);
  let redis: Redis;
  try {
    redis = await openConnection(
      connectionOptions(settings, { host: secret.host ?? settings.host, port: Number.isInteger(port) ? port : settings.port }),
    );
  } catch {
    return 'inconclusive';
  }
  try {
    await redis.call('AUTH', user, password);
    // The old password still authenticates: a live credential.
    return 'still-valid';
  } catch (err) {
    return replyCodeOf(err) === 'WRONGPASS' ? 'refused' : 'inconclusive';
  } finally {
    redis.disconnect();
  }
}
