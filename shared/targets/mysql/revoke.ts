import type { PoolConnection } from 'mysql2/promise';
import type { RevokeContext } from '../../lease/ports.ts';
import { account, escape } from './connection.ts';
import type { Flavor, MysqlAdmin } from './connection.ts';
import { errnoOf, MysqlTargetError, sleep, wrap } from './errors.ts';

/** The accounts (hosts) of a user name: MariaDB keeps them in mysql.global_priv (roles have Host ''), MySQL in mysql.user. */
export async function hostsOf(conn: PoolConnection, flavor: Flavor, user: string): Promise<string[]> {
  const table = flavor === 'mariadb' ? 'mysql.global_priv' : 'mysql.user';
  const [rows] = await conn.query(`SELECT Host AS host FROM ${table} WHERE User = ${escape(user)} AND Host <> ''`);
  return (rows as Array<{ host: string }>).map((r) => String(r.host));
}

/**
 * KILL CONNECTION of each id, in one batch; a session that ended meanwhile stops the batch with
 * 1094 (unknown thread), which is what we wanted, so the rest are then killed one by one.
 */
export async function killSessions(conn: PoolConnection, ids: readonly number[]): Promise<void> {
  const safe = ids.filter((id) => Number.isSafeInteger(id));
  if (safe.length === 0) return;
  try {
    await conn.query(safe.map((id) => `KILL CONNECTION ${id}`).join(';\n'));
    return;
  } catch (err) {
    if (errnoOf(err) !== 1094) throw err;
  }
  for (const id of safe) {
    try {
      await conn.query(`KILL CONNECTION ${id}`);
    } catch (err) {
      if (errnoOf(err) !== 1094) throw err;
    }
  }
}

/**
 * Makes the task's account unusable and ends what it opened: ACCOUNT LOCK (no new login, on every
 * host the name has), KILL CONNECTION of every session the process list shows for the user name,
 * DROP USER IF EXISTS, then the process list again until no session of the name is left (a
 * killed thread stays listed until it notices; a login that passed its check before the lock
 * shows up now). The sessions are found by name, which MariaDB keeps on a thread after its
 * account is dropped: a session survives DROP USER and keeps its global and role privileges
 * (hashicorp/vault #10480). Idempotent; every failure is retryable, a revocation is never abandoned.
 */
export async function revokeUser(admin: MysqlAdmin, ctx: RevokeContext, user: string): Promise<void> {
  try {
    await admin.withConnection(async (conn) => {
      const flavor = await admin.flavor(conn);
      const hosts = new Set([admin.settings.userHost, ...(await hostsOf(conn, flavor, user))]);
      const recorded = ctx.metadata?.userHost;
      if (recorded && /^[A-Za-z0-9.%_:-]{1,255}$/.test(recorded)) hosts.add(recorded);
      const accounts = [...hosts].map((h) => account(user, h));
      const [results] = await conn.query(
        `${accounts.map((a) => `ALTER USER IF EXISTS ${a} ACCOUNT LOCK`).join(';\n')};\n${sessionSql(user)}`,
      );
      await killSessions(conn, idsOf(results));
      const [dropped] = await conn.query(`DROP USER IF EXISTS ${accounts.join(', ')};\n${sessionSql(user)}`);
      await awaitSessionsGone(admin, conn, user, idsOf(dropped));
    });
  } catch (err) {
    const wrapped = wrap('revoke', err);
    throw wrapped instanceof MysqlTargetError && !wrapped.retryable ? new MysqlTargetError(wrapped.message, wrapped.errno, true) : wrapped;
  }
}

export function sessionSql(user: string): string {
  return `SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = ${escape(user)} AND ID <> CONNECTION_ID()`;
}

/** The ids of the last result set of a multi-statement batch (the session query). */
function idsOf(results: unknown): number[] {
  const sets = Array.isArray(results) && Array.isArray(results[0]) ? results : [results];
  const last = sets[sets.length - 1];
  return Array.isArray(last) ? (last as Array<{ id: number | string }>).map((r) => Number(r.id)) : [];
}

/** Kills and re-reads the user's sessions until none is listed, or fails retryably at the drain timeout. */
export async function awaitSessionsGone(admin: MysqlAdmin, conn: PoolConnection, user: string, first: number[]): Promise<void> {
  const timeoutMs = admin.settings.sessionDrainTimeoutMs;
  const deadline = Date.now() + timeoutMs;
  let ids = first;
  let pause = 1;
  while (ids.length > 0) {
    if (Date.now() >= deadline)
      throw new MysqlTargetError(`mysql revoke: ${ids.length} sessions of ${user} still open after ${timeoutMs} ms`);
    await killSessions(conn, ids);
    await sleep(pause);
    pause = Math.min(pause * 2, 50);
    ids = await admin.sessionsOf(conn, user);
  }
}
