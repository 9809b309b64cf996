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
  let broken = false;
  try {
    await client.query('BEGIN');
    await admin.quietLogging(client);
    try {
      await client.query(
        `CREATE ROLE ${roleId} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS ` +
          `PASSWORD ${pw} VALID UNTIL ${validUntil} IN ROLE ${groupId}`,
      );
    } catch (err) {
      if (sqlStateOf(err) !== '42710') throw err;
      // The role exists: an earlier attempt created it and crashed before recording it.
      // Re-key it so only the password returned now works.
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      await admin.quietLogging(client);
      await client.query(`ALTER ROLE ${roleId} WITH LOGIN PASSWORD ${pw} VALID UNTIL ${validUntil}`);
      await client.query(`GRANT ${groupId} TO ${roleId}`);
    }
    const { rows } = await client.query<{ oid: string }>('SELECT oid::text AS oid FROM pg_roles WHERE rolname = $1', [role]);
    await client.query('COMMIT');
    return {
      secret: {
        host: admin.settings.host,
        port: String(admin.settings.port),
        database: admin.settings.database,
        username: role,
        password,
      },
      naturalExpiry: ctx.lease.expiresAt,
      metadata: rows[0] ? { roleOid: rows[0].oid } : {},
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

/**
 * Best effort: keeps CREATE ROLE out of statement logs where the admin may change these settings.
 * Learns once per driver which settings this admin may set; afterwards one round trip.
 */
export class QuietLogging {
  private allowed: Array<readonly [string, string]> | undefined;

  async apply(client: pg.PoolClient): Promise<void> {
    if (this.allowed) {
      await client.query('SAVEPOINT tl_quiet');
      try {
        await client.query(
          `SELECT ${this.allowed.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ')}`,
          this.allowed.flat(),
        );
        await client.query('RELEASE SAVEPOINT tl_quiet');
        return;
      } catch {
        // Privileges changed under us: learn again, one setting at a time.
        await client.query('ROLLBACK TO SAVEPOINT tl_quiet');
        this.allowed = undefined;
      }
    }
    const allowed: Array<readonly [string, string]> = [];
    for (const [name, value] of QUIET_SETTINGS) {
      await client.query('SAVEPOINT tl_quiet');
      try {
        await client.query('SELECT set_config($1, $2, true)', [name, value]);
        await client.query('RELEASE SAVEPOINT tl_quiet');
        allowed.push([name, value]);
      } catch {
        await client.query('ROLLBACK TO SAVEPOINT tl_quiet');
      }
    }
    if (allowed.length) this.allowed = allowed;
  }
}
