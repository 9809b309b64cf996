import pg from 'pg';
import type { VerifyContext, VerifyResult } from '../../lease/ports.ts';
import type { PostgresAdmin } from './connection.ts';
import { sslConfig } from './connection.ts';
import { sqlStateOf } from './errors.ts';

/**
 * Proves the role's credential is dead: a login with the old password is refused and no session of
 * the role is left. Without the password, the role must be gone (a NOLOGIN leftover is inconclusive).
 */
export async function verifyRole(admin: PostgresAdmin, ctx: VerifyContext, role: string): Promise<VerifyResult> {
  const oids = ctx.metadata?.roleOid && /^[0-9]+$/.test(ctx.metadata.roleOid) ? [ctx.metadata.roleOid] : [];
  const password = ctx.secret?.password;
  if (password) {
    const login = await admin.tryLogin(ctx.secret ?? {}, role, password);
    if (login !== 'refused') return login;
  }
  try {
    const sessions = await admin.sessionPids(role, oids);
    if (sessions.length > 0) return 'still-valid';
    if (password) return 'rejected';
    const { rows } = await admin.pool.query<{ rolcanlogin: boolean }>('SELECT rolcanlogin FROM pg_roles WHERE rolname = $1', [role]);
    if (rows.length === 0) return 'rejected';
    // A role that can still log in is a usable credential; a NOLOGIN leftover is a half-done revoke.
    return rows[0]?.rolcanlogin ? 'still-valid' : 'inconclusive';
  } catch {
    return 'inconclusive';
  }
}

export async function sessionPids(admin: PostgresAdmin, role: string, oids: Iterable<string>): Promise<number[]> {
  const { rows } = await admin.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
      WHERE (usename = $1 OR usesysid = ANY($2::oid[])) AND pid <> pg_backend_pid()`,
    [role, [...oids]],
  );
  return rows.map((r) => r.pid);
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
