import pg from 'pg';
import type { RevokeContext } from '../../lease/ports.ts';
import type { PostgresAdmin } from './connection.ts';
import { PostgresTargetError, sleep, sqlStateOf, TRANSIENT_STATES, wrap } from './errors.ts';
import type { PostgresAccess } from './settings.ts';

const { escapeIdentifier } = pg;

/**
 * Makes the task's role unusable: NOLOGIN without a password, every session terminated, what it
 * owns handed on (or dropped) in every database, the role dropped, then sessions drained again.
 * Transient catalog conflicts are retried in the call; any other failure is thrown retryable,
 * since a revocation is never abandoned.
 */
export async function revokeRole(
  admin: PostgresAdmin,
  access: Readonly<Record<string, PostgresAccess>>,
  ctx: RevokeContext,
  role: string,
): Promise<void> {
  const oids = new Set<string>();
  const known = ctx.metadata?.roleOid;
  if (known && /^[0-9]+$/.test(known)) oids.add(known);

  const level = Object.hasOwn(access, ctx.grant.access) ? access[ctx.grant.access] : undefined;
  const owner = admin.settings.reassignOwnedTo ?? level?.groupRole;
  for (let attempt = 1; ; attempt++) {
    try {
      await admin.revokeOnce(role, oids, owner);
      return;
    } catch (err) {
      const state = sqlStateOf(err);
      if (attempt < 4 && state !== undefined && TRANSIENT_STATES.has(state)) {
        await sleep(50 * attempt);
        continue;
      }
      const wrapped = wrap('revoke', err);
      // A revocation is never abandoned: whatever failed (even a privilege), retrying may succeed later.
      throw wrapped instanceof PostgresTargetError && !wrapped.retryable
        ? new PostgresTargetError(wrapped.message, wrapped.sqlState, true)
        : wrapped;
    }
  }
}

/** One attempt of {@link revokeRole}; `oids` collects the role's oids for the session drains. */
export async function revokeOnce(admin: PostgresAdmin, role: string, oids: Set<string>, owner: string | undefined): Promise<void> {
  const roleId = escapeIdentifier(role);
  const found = await admin.pool.query<{ oid: string }>('SELECT oid::text AS oid FROM pg_roles WHERE rolname = $1', [role]);
  const oid = found.rows[0]?.oid;
  if (oid) oids.add(oid);

  if (oid) {
    // Stop new logins first (and drop the password, so a login is refused at the password check).
    await ignoreMissingRole(admin.pool.query(`ALTER ROLE ${roleId} WITH NOLOGIN PASSWORD NULL`));
  }
  // Sessions survive NOLOGIN, a password change and even DROP ROLE: end them explicitly.
  // One quiet look suffices here: the drain after DROP ROLE (and verify) look again.
  await admin.drainSessions(role, oids, 1);

  if (oid) {
    // Ownership and privileges are per database: clean the target database, then every other
    // database where the catalog says the role still has something.
    await admin.releaseOwned(role, admin.settings.database, owner);
    const others = await admin.pool.query<{ datname: string }>(
      `SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid
        WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = $1::oid AND d.datname <> current_database()
          AND d.datallowconn`,
      [oid],
    );
    for (const { datname } of others.rows) await admin.releaseOwned(role, datname, owner);
    await admin.pool.query(`DROP ROLE IF EXISTS ${roleId}`);
  }
  // A login that passed authentication just before NOLOGIN committed can appear late: look again.
  await admin.drainSessions(role, oids);
}

export async function releaseOwned(admin: PostgresAdmin, role: string, database: string, owner: string | undefined): Promise<void> {
  const roleId = escapeIdentifier(role);
  // No known owner (an access level removed from the config since): drop, never give to the admin.
  const to = owner ? escapeIdentifier(owner) : undefined;
  await inDatabase(admin, database, async (q) => {
    try {
      await q('BEGIN');
      if (to) await q(`REASSIGN OWNED BY ${roleId} TO ${to}`);
      await q(`DROP OWNED BY ${roleId}`);
      await q('COMMIT');
    } catch (err) {
      await q('ROLLBACK');
      if (sqlStateOf(err) !== '42704') throw err; // role already gone: nothing to release
    }
  });
}

/** Runs `fn` on one connection to `database`: a pooled one for the target database, else a short-lived one. */
async function inDatabase(
  admin: PostgresAdmin,
  database: string,
  fn: (q: (sql: string) => Promise<unknown>) => Promise<void>,
): Promise<void> {
  if (database === admin.settings.database) {
    const client = await admin.pool.connect();
    let broken = false;
    try {
      await fn((sql) => client.query(sql));
    } catch (err) {
      broken = true;
      throw err;
    } finally {
      client.release(broken);
    }
    return;
  }
  const client = new pg.Client(admin.connectionConfig(database));
  client.on('error', () => undefined);
  try {
    await client.connect();
    await fn((sql) => client.query(sql));
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function ignoreMissingRole(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (sqlStateOf(err) !== '42704') throw err;
  }
}

/** Terminates the role's backends until none is seen `quietLooks` times in a row, or fails after the drain timeout. */
export async function drainSessions(admin: PostgresAdmin, role: string, oids: Set<string>, quietLooks = 2): Promise<void> {
  const deadline = Date.now() + admin.settings.sessionDrainTimeoutMs;
  let quiet = 0;
  for (;;) {
    // Find and signal in one round trip; then poll below: the timeout form of
    // pg_terminate_backend waits for each backend in turn at ~100 ms granularity.
    const pids = await terminateSessions(admin, role, oids);
    if (pids.length === 0) {
      if (++quiet >= quietLooks) return;
    } else {
      quiet = 0;
    }
    if (Date.now() > deadline) {
      throw new PostgresTargetError(`postgres revoke: sessions of ${role} still open after ${admin.settings.sessionDrainTimeoutMs} ms`);
    }
    await sleep(pids.length === 0 ? 5 : 20);
  }
}

/** Signals every backend of the role (by name or by oid); returns the pids it signalled. */
async function terminateSessions(admin: PostgresAdmin, role: string, oids: Iterable<string>): Promise<number[]> {
  const { rows } = await admin.pool.query<{ pid: number }>(
    `SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE (usename = $1 OR usesysid = ANY($2::oid[])) AND pid <> pg_backend_pid()`,
    [role, [...oids]],
  );
  return rows.map((r) => r.pid);
}
