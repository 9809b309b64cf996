import type mysql from 'mysql2/promise';
import type { PoolConnection } from 'mysql2/promise';
import type { VerifyContext, VerifyResult } from '../../lease/ports.ts';
import { escape, mysqlClient, sslOptions } from './connection.ts';
import type { Flavor, MysqlAdmin } from './connection.ts';
import { errnoOf, LOGIN_REFUSED_ERRNOS, sleep } from './errors.ts';

/** What the server shows of a user name, in one statement. */
export interface AccountState {
  /** Established threads of the user in the process list, its account dropped or not. */
  sessions: number;
  /** Threads of the name still in the handshake (COMMAND 'Connect'): a refused login on its way out, or one that may yet succeed. */
  connecting: number;
  /** Accounts (hosts) of the name. */
  accounts: number;
  /** Of those, not locked. */
  unlocked: number;
}

/**
 * Proves the credential dead: a fresh login with the old password is refused (1045, or the
 * locked-account error) and no session of the user is in the process list. Without the password
 * the account must be gone (a locked leftover is a half-done revoke: inconclusive).
 */
export async function verifyUser(admin: MysqlAdmin, ctx: VerifyContext, user: string): Promise<VerifyResult> {
  const password = ctx.secret?.password;
  if (password) {
    const login = await admin.tryLogin(ctx.secret ?? {}, user, password);
    if (login !== 'refused') return login;
  }
  let state: AccountState;
  try {
    state = await admin.withConnection(async (conn) => {
      const flavor = await admin.flavor(conn);
      let s = await accountState(conn, flavor, user);
      // A refused login (ours just now, or anyone's) leaves the list a moment after its client got
      // the error; a login still in its handshake may yet succeed. Wait briefly for them to settle.
      for (let pause = 5; s.sessions === 0 && s.connecting > 0 && pause <= 160; pause *= 2) {
        await sleep(pause);
        s = await accountState(conn, flavor, user);
      }
      return s;
    });
  } catch {
    return 'inconclusive';
  }
  if (state.sessions > 0) return 'still-valid';
  if (state.connecting > 0) return 'inconclusive';
  if (password || state.accounts === 0) return 'rejected';
  return state.unlocked > 0 ? 'still-valid' : 'inconclusive';
}

export async function accountState(conn: PoolConnection, flavor: Flavor, user: string): Promise<AccountState> {
  const u = escape(user);
  const accounts =
    flavor === 'mariadb'
      ? `SELECT COUNT(*) AS accounts,
  COALESCE(SUM(COALESCE(JSON_VALUE(Priv, '$.account_locked'), '0') NOT IN ('1', 'true')), 0) AS unlocked
  FROM mysql.global_priv WHERE User = ${u} AND Host <> ''`
      : `SELECT COUNT(*) AS accounts, COALESCE(SUM(account_locked = 'N'), 0) AS unlocked FROM mysql.user WHERE User = ${u}`;
  // Two statements in one round trip, not one with subqueries: MariaDB 10.11 can crash (signal 11
  // in ha_maria::drop_table) freeing an information_schema.PROCESSLIST scalar subquery's temporary table.
  const [results] = await conn.query(
    `SELECT COALESCE(SUM(COMMAND <> 'Connect'), 0) AS sessions, COALESCE(SUM(COMMAND = 'Connect'), 0) AS connecting
  FROM information_schema.PROCESSLIST WHERE USER = ${u} AND ID <> CONNECTION_ID();\n${accounts}`,
  );
  const [[procs], [acct]] = results as unknown as [[Record<string, unknown>?], [Record<string, unknown>?]];
  if (!procs || !acct) throw new Error('no row');
  return {
    sessions: Number(procs.sessions),
    connecting: Number(procs.connecting),
    accounts: Number(acct.accounts),
    unlocked: Number(acct.unlocked),
  };
}

/**
 * Errnos where the password was accepted and the server then refused the session for another
 * reason: 1862/1820 an expired password (a client that can handle it gets a sandbox that may SET
 * PASSWORD), 1226 the user's connection cap. The credential still works.
 */
const PASSWORD_ACCEPTED_ERRNOS = new Set([1862, 1820, 1226]);

/** 'refused' means the server rejected the password itself; the caller then checks sessions. */
export async function tryLogin(
  admin: MysqlAdmin,
  secret: Record<string, string>,
  user: string,
  password: string,
): Promise<'refused' | 'still-valid' | 'inconclusive'> {
  const { settings } = admin;
  const port = Number(secret.port ?? settings.port);
  let conn: mysql.Connection;
  try {
    conn = await (
      await mysqlClient()
    ).createConnection({
      host: secret.host ?? settings.host,
      port: Number.isInteger(port) ? port : settings.port,
      user,
      password,
      connectTimeout: settings.connectTimeoutMs,
      ssl: sslOptions(settings),
    });
  } catch (err) {
    const errno = errnoOf(err);
    if (errno !== undefined && LOGIN_REFUSED_ERRNOS.has(errno)) return 'refused';
    return errno !== undefined && PASSWORD_ACCEPTED_ERRNOS.has(errno) ? 'still-valid' : 'inconclusive';
  }
  // The old password still opens a session: a live credential. Close what we opened.
  conn.destroy();
  return 'still-valid';
}
