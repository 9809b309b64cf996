import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { IssueContext, IssuedCredential } from '../../lease/ports.ts';
import type { PostgresAdmin } from './connection.ts';
import { PostgresTargetError, sqlStateOf, wrap } from './errors.ts';
import { scramSha256Verifier } from './scram.ts';
import type { PostgresAccess } from './settings.ts';

const { escapeIdentifier, escapeLiteral } = pg;

/**
 * Creates the task's login role in the grant's group role, with a fresh random password sent as a
 * SCRAM verifier and VALID UNTIL the lease's expiry. An existing role of that name (an earlier
 * attempt that crashed before it was recorded) is re-keyed, so only the password returned now works.
 */
export async function issueRole(
  admin: PostgresAdmin,
  access: Readonly<Record<string, PostgresAccess>>,
  ctx: IssueContext,
  role: string,
): Promise<IssuedCredential> {
  const level = Object.hasOwn(access, ctx.grant.access) ? access[ctx.grant.access] : undefined;
  if (!level) {
    throw new PostgresTargetError(
      `postgres target ${admin.name} has no access named ${JSON.stringify(ctx.grant.access.slice(0, 64))}`,
      undefined,
      false,
    );
  }
  if (!Number.isFinite(ctx.lease.expiresAt)) {
    throw new PostgresTargetError('lease expiresAt is not a valid time', undefined, false);
  }
  const password = randomBytes(32).toString('base64url');
  const verifier = await scramSha256Verifier(password);
  const secrets = [password, verifier];
  const validUntil = escapeLiteral(new Date(ctx.lease.expiresAt).toISOString());
  const roleId = escapeIdentifier(role);
  const groupId = escapeIdentifier(level.groupRole);
  const pw = escapeLiteral(verifier);

  let client: pg.PoolClient;
  try {
    client = await admin.pool.connect();
  } catch (err) {
    throw wrap('connect', err, secrets);
  }
  // The oid is read in the transaction that creates the role: it is known before the role can log
  // in, and the password exists only in this process until issue returns it with the oid.
  const oidSql = `SELECT oid::text AS oid FROM pg_roles WHERE rolname = ${escapeLiteral(role)};\nCOMMIT`;
  let broken = false;
  try {
    let results: pg.QueryResult[];
    try {
      await admin.beginQuiet(client);
      // The verifier goes in its own message: the logging settings above apply to it (a batch is
      // logged as it arrives, before any of its statements run).
      results = (await client.query(
        `CREATE ROLE ${roleId} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS ` +
          `PASSWORD ${pw} VALID UNTIL ${validUntil} IN ROLE ${groupId};\n${oidSql}`,
      )) as unknown as pg.QueryResult[];
    } catch (err) {
      if (sqlStateOf(err) !== '42710') throw err;
      // The role exists: an earlier attempt created it and crashed before recording it.
      // Re-key it so only the password returned now works.
      await client.query('ROLLBACK');
      await admin.beginQuiet(client);
      results = (await client.query(
        `ALTER ROLE ${roleId} WITH LOGIN PASSWORD ${pw} VALID UNTIL ${validUntil};\nGRANT ${groupId} TO ${roleId};\n${oidSql}`,
      )) as unknown as pg.QueryResult[];
    }
    const oid = (results[results.length - 2]?.rows[0] as { oid?: string } | undefined)?.oid;
    if (!oid) throw new PostgresTargetError('postgres issue: the new role has no oid', undefined, true);
    return {
      secret: {
        host: admin.settings.host,
        port: String(admin.settings.port),
        database: admin.settings.database,
        username: role,
        password,
      },
      naturalExpiry: ctx.lease.expiresAt,
      metadata: { roleOid: oid },
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw wrap('issue', err, secrets);
  } finally {
    client.release(broken);
  }
}

/** Statement-logging settings turned off for the CREATE ROLE transaction, each best-effort. */
const QUIET_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ['log_statement', 'none'],
  ['log_min_error_statement', 'panic'],
  ['log_min_duration_statement', '-1'],
  ['pg_stat_statements.track_utility', 'off'],
];

const selectQuiet = (settings: ReadonlyArray<readonly [string, string]>) =>
  `SELECT ${settings.map(([name, value]) => `set_config(${escapeLiteral(name)}, ${escapeLiteral(value)}, true)`).join(', ')}`;

/**
 * BEGIN, and best effort keeps CREATE ROLE out of statement logs where the admin may change these
 * settings: one round trip once learned. The first time, all settings are tried at once; if that
 * is refused, each is learned alone (savepoints), and again whenever privileges change under us.
 */
export class QuietLogging {
  private allowed: Array<readonly [string, string]> | undefined;

  async begin(client: pg.PoolClient): Promise<void> {
    const tryAll = this.allowed ?? QUIET_SETTINGS;
    try {
      await client.query(tryAll.length ? `BEGIN;\n${selectQuiet(tryAll)}` : 'BEGIN');
      this.allowed = [...tryAll];
      return;
    } catch {
      await client.query('ROLLBACK');
    }
    const allowed: Array<readonly [string, string]> = [];
    await client.query('BEGIN');
    for (const setting of QUIET_SETTINGS) {
      await client.query('SAVEPOINT tl_quiet');
      try {
        await client.query(selectQuiet([setting]));
        await client.query('RELEASE SAVEPOINT tl_quiet');
        allowed.push(setting);
      } catch {
        await client.query('ROLLBACK TO SAVEPOINT tl_quiet');
      }
    }
    this.allowed = allowed;
  }
}
