import pg from 'pg';
import type { VerifyContext, VerifyResult } from '../../lease/ports.ts';
import type { PostgresAdmin } from './connection.ts';
import { sslConfig } from './connection.ts';
import { sqlStateOf } from './errors.ts';
import { recordedOids, sessionMatch } from './revoke.ts';

const { escapeLiteral } = pg;

/** What the server shows of a role, in one statement. */
export interface SessionCheck {
  /** Backends of the role: by name while it exists, by oid after it is dropped. */
  sessions: number;
  /** Client backends still starting that began before the drop (or now): they may yet appear as the role. */
  pending: number;
  /** Client sessions of some dropped role: only counted against a role whose oid nobody knows. */
  orphans: number;
  /** null when the role does not exist. */
  canLogin: boolean | null;
}

/**
 * Proves the role's credential is dead: a login with the old password is refused, no session of the
 * role is left (looked up by the oid recorded at issue, so a dropped role's sessions are still
 * seen), and no login that passed the password check before the drop is still starting. Without
 * the password, the role must be gone (a NOLOGIN leftover is inconclusive).
 */
export async function verifyRole(admin: PostgresAdmin, ctx: VerifyContext, role: string): Promise<VerifyResult> {
  const revocation = admin.revocations.get(role);
  const oids = [...new Set([...recordedOids(ctx.metadata), ...(revocation?.oids ?? [])])];
  const password = ctx.secret?.password;
  if (password) {
    const login = await admin.tryLogin(ctx.secret ?? {}, role, password);
    if (login !== 'refused') return login;
  }
  let check: SessionCheck;
  try {
    check = await admin.sessionCheck(role, oids, revocation?.at);
  } catch {
    return 'inconclusive';
  }
  if (check.sessions > 0) return 'still-valid';
  // A login past its password check before the drop shows no role until it has started: wait for it.
  if (check.pending > 0) return 'inconclusive';
  // Gone, with no oid on record: a session of a dropped role could be this one's, and nothing can tell.
  if (check.canLogin === null && oids.length === 0 && check.orphans > 0) return 'inconclusive';
  if (password || check.canLogin === null) return 'rejected';
  // A role that can still log in is a usable credential; a NOLOGIN leftover is a half-done revoke.
  return check.canLogin ? 'still-valid' : 'inconclusive';
}

/** One statement: the role's sessions (by name or oid), logins still starting since `since` (default now), orphans, the role. */
export async function sessionCheck(admin: PostgresAdmin, role: string, oids: readonly string[], since?: string): Promise<SessionCheck> {
  const bound = since === undefined ? 'statement_timestamp()' : `${escapeLiteral(since)}::timestamptz`;
  const { rows } = await admin.pool.query<SessionCheck>(
    `SELECT (SELECT count(*) FROM pg_stat_activity WHERE ${sessionMatch(role, oids)})::int AS sessions,
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'starting'
    AND pid <> pg_backend_pid() AND backend_start < ${bound})::int AS pending,
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename IS NULL
    AND usesysid IS NOT NULL AND pid <> pg_backend_pid())::int AS orphans,
  (SELECT rolcanlogin FROM pg_roles WHERE rolname = ${escapeLiteral(role)}) AS "canLogin"`,
  );
  const row = rows[0];
  if (!row) throw new Error('no row');
  return row;
}

/** 'refused' means PostgreSQL rejected the login itself; the caller then checks sessions. */
export async function tryLogin(
  admin: PostgresAdmin,
  secret: Record<string, string>,
  role: string,
  password: string,
): Promise<'refused' | 'still-valid' | 'inconclusive'> {
  const { settings } = admin;
  const port = Number(secret.port ?? settings.port);
  const client = new pg.Client({
    host: secret.host ?? settings.host,
    port: Number.isInteger(port) ? port : settings.port,
    database: secret.database ?? settings.database,
    user: role,
    password,
    ssl: sslConfig(settings),
    connectionTimeoutMillis: settings.connectTimeoutMs,
    application_name: 'tasklease-verify',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    const state = sqlStateOf(err);
    return state === '28P01' || state === '28000' ? 'refused' : 'inconclusive';
  }
  // The old password still works: that is a live credential. Close what we opened.
  await client.end().catch(() => undefined);
  return 'still-valid';
}
