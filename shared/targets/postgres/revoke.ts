import pg from 'pg';
import type { RevokeContext } from '../../lease/ports.ts';
import type { PostgresAdmin } from './connection.ts';
import { PostgresTargetError, sleep, sqlStateOf, TRANSIENT_STATES, wrap } from './errors.ts';
import type { PostgresAccess } from './settings.ts';

const { escapeIdentifier, escapeLiteral } = pg;

/** The role's oids as the recorded metadata gives them (an oid is only ever digits). */
export function recordedOids(metadata: Record<string, string> | undefined): string[] {
  const oid = metadata?.roleOid;
  return oid && /^[0-9]+$/.test(oid) ? [oid] : [];
}

/**
 * Makes the task's role unusable: its sessions signalled, what it owns handed on, the role dropped
 * (one transaction, one round trip), then every session of its oid ended and waited for. Transient
 * catalog conflicts are retried in the call; any other failure is thrown retryable, since a
 * revocation is never abandoned.
 */
export async function revokeRole(
  admin: PostgresAdmin,
  access: Readonly<Record<string, PostgresAccess>>,
  ctx: RevokeContext,
  role: string,
): Promise<void> {
  const oids = new Set<string>([...recordedOids(ctx.metadata), ...(admin.revocations.get(role)?.oids ?? [])]);
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

/** What one look at pg_stat_activity after the drop found. */
export interface Sweep {
  /** Server time of the first look after the drop: a login that starts later cannot become this role's. */
  at: string;
  /** Backends of the role (by name while it exists, by oid after) just signalled. */
  pids: number[];
  /** Client backends still starting that began before `at`: past the login check, they may yet appear as the role. */
  pending: number;
}

/**
 * Sessions of the role: by name while it exists, by oid once it is dropped (pg_stat_activity's
 * usename is NULL then). The name guard keeps a reused oid from ever matching another live role.
 */
export function sessionMatch(role: string, oids: Iterable<string>): string {
  const list = [...oids].filter((o) => /^[0-9]+$/.test(o));
  const byOid = list.length ? ` OR (usename IS NULL AND usesysid = ANY('{${list.join(',')}}'::oid[]))` : '';
  return `pid <> pg_backend_pid() AND (usename = ${escapeLiteral(role)}${byOid})`;
}

/** One statement: signals the role's backends and counts the logins still starting since `since` (default: now). */
function sweepSql(role: string, oids: Iterable<string>, since: string | undefined): string {
  const bound = since === undefined ? 'statement_timestamp()' : `${escapeLiteral(since)}::timestamptz`;
  return `WITH s AS MATERIALIZED (SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${sessionMatch(role, oids)})
SELECT statement_timestamp()::text AS at, (SELECT coalesce(array_agg(pid), '{}') FROM s) AS pids,
  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'starting'
    AND pid <> pg_backend_pid() AND backend_start < ${bound})::int AS pending`;
}

function sweepOf(results: pg.QueryResult | pg.QueryResult[]): Sweep {
  const last = Array.isArray(results) ? results[results.length - 1] : results;
  const row = last?.rows[0] as { at: string; pids: number[]; pending: number } | undefined;
  if (!row) throw new PostgresTargetError('postgres revoke: the session sweep returned nothing');
  return { at: row.at, pids: row.pids, pending: row.pending };
}

/**
 * One attempt of {@link revokeRole}, on one admin connection. The common case is one round trip:
 * BEGIN; signal the role's sessions (so their locks go); REASSIGN/DROP OWNED; DROP ROLE; COMMIT;
 * then, after the commit, signal whatever logged in meanwhile. Statements are inlined literals
 * (the simple protocol runs a batch in one round trip; extended-protocol parameters cannot).
 */
export async function revokeOnce(admin: PostgresAdmin, role: string, oids: Set<string>, owner: string | undefined): Promise<void> {
  const client = await admin.pool.connect();
  let broken = false;
  try {
    if (oids.size === 0) {
      // No oid recorded (an intent: issue crashed before its record): learn it before the drop hides the sessions.
      const found = await client.query<{ oid: string }>(`SELECT oid::text AS oid FROM pg_roles WHERE rolname = ${escapeLiteral(role)}`);
      for (const r of found.rows) oids.add(r.oid);
    }
    const roleId = escapeIdentifier(role);
    const release = `${owner ? `REASSIGN OWNED BY ${roleId} TO ${escapeIdentifier(owner)};\n` : ''}DROP OWNED BY ${roleId};`;
    let sweep: Sweep;
    try {
      sweep = sweepOf(
        await client.query(
          `BEGIN;\nSELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${sessionMatch(role, oids)};\n` +
            `${release}\nDROP ROLE ${roleId};\nCOMMIT;\n${sweepSql(role, oids, undefined)}`,
        ),
      );
    } catch (err) {
      await client.query('ROLLBACK');
      const state = sqlStateOf(err);
      if (state === '42704') {
        // The role is gone (an earlier attempt, or never created): only its sessions may be left.
        sweep = sweepOf(await client.query(sweepSql(role, oids, undefined)));
      } else if (state === '2BP01') {
        // It owns or holds something in another database: release it there, then drop.
        sweep = await revokeAcrossDatabases(admin, client, role, oids, owner);
      } else {
        throw err;
      }
    }
    // Remembered before the wait: should it time out, the verify after it still knows the oid and the drop.
    admin.revocations.remember(role, { oids: [...oids], at: sweep.at });
    await admin.awaitSessionsGone(client, role, oids, sweep);
  } catch (err) {
    // A failure mid-batch may leave the connection in any state: do not hand it to the next job.
    broken = true;
    throw err;
  } finally {
    client.release(broken);
  }
}

/** The slow path: logins stopped first, ownership released in every database that has some, then the drop. */
async function revokeAcrossDatabases(
  admin: PostgresAdmin,
  client: pg.PoolClient,
  role: string,
  oids: Set<string>,
  owner: string | undefined,
): Promise<Sweep> {
  const roleId = escapeIdentifier(role);
  const [, , others] = (await client.query(
    `ALTER ROLE ${roleId} WITH NOLOGIN PASSWORD NULL;
SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${sessionMatch(role, oids)};
SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.refobjid
  WHERE s.refclassid = 'pg_authid'::regclass AND r.rolname = ${escapeLiteral(role)} AND d.datname <> current_database() AND d.datallowconn`,
  )) as unknown as pg.QueryResult<{ datname: string }>[];
  for (const { datname } of others?.rows ?? []) await admin.releaseOwned(role, datname, owner);
  const release = `${owner ? `REASSIGN OWNED BY ${roleId} TO ${escapeIdentifier(owner)};\n` : ''}DROP OWNED BY ${roleId};`;
  try {
    return sweepOf(await client.query(`BEGIN;\n${release}\nDROP ROLE ${roleId};\nCOMMIT;\n${sweepSql(role, oids, undefined)}`));
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  }
}

/**
 * After the drop: waits for each signalled backend to exit (the server's own wait,
 * pg_terminate_backend(pid, timeout)) and for logins that were starting at the drop to finish, and
 * ends any of them that turns out to be the role. Without sessions or starting logins it returns at
 * once; the clock is only read for logins still starting, which nothing can be waited on for.
 * Returns the server time of the drop's first sweep (verify bounds its own look with it).
 */
export async function awaitSessionsGone(
  admin: PostgresAdmin,
  client: pg.PoolClient,
  role: string,
  oids: Set<string>,
  first: Sweep,
): Promise<string> {
  const timeoutMs = admin.settings.sessionDrainTimeoutMs;
  const deadline = Date.now() + timeoutMs;
  let sweep = first;
  let pause = 1;
  while (sweep.pids.length > 0 || sweep.pending > 0) {
    const left = deadline - Date.now();
    if (left <= 0) {
      const what = sweep.pids.length > 0 ? 'sessions' : 'logins that began before the drop';
      throw new PostgresTargetError(`postgres revoke: ${what} of ${role} still open after ${timeoutMs} ms`);
    }
    if (sweep.pids.length === 0) {
      // Only starting logins: they appear (as the role, by oid) or fail within moments.
      await sleep(pause);
      pause = Math.min(pause * 2, 50);
    }
    const wait = sweep.pids.length
      ? `SELECT pg_terminate_backend(pid, ${Math.max(1, Math.min(left, 5_000))}) FROM unnest('{${sweep.pids.join(',')}}'::int[]) pid;\n`
      : '';
    sweep = { ...sweepOf(await client.query(wait + sweepSql(role, oids, first.at))), at: first.at };
  }
  return first.at;
}

export async function releaseOwned(admin: PostgresAdmin, role: string, database: string, owner: string | undefined): Promise<void> {
  const roleId = escapeIdentifier(role);
  const to = owner ? escapeIdentifier(owner) : undefined;
  const client = new pg.Client(admin.connectionConfig(database));
  client.on('error', () => undefined);
  try {
    await client.connect();
    try {
      await client.query(`BEGIN;\n${to ? `REASSIGN OWNED BY ${roleId} TO ${to};\n` : ''}DROP OWNED BY ${roleId};\nCOMMIT`);
    } catch (err) {
      await client.query('ROLLBACK');
      if (sqlStateOf(err) !== '42704') throw err; // role already gone: nothing to release
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * What this driver instance learned revoking a role, for the verify that follows in the same process:
 * its oids (an intent's record has none) and the server time of the drop. Bounded: oldest forgotten.
 */
export class Revocations {
  private readonly byRole = new Map<string, { oids: string[]; at: string }>();

  constructor(private readonly max = 10_000) {}

  get(role: string): { oids: string[]; at: string } | undefined {
    return this.byRole.get(role);
  }

  remember(role: string, entry: { oids: string[]; at: string }): void {
    this.byRole.delete(role);
    this.byRole.set(role, entry);
    if (this.byRole.size > this.max) this.byRole.delete(this.byRole.keys().next().value as string);
  }
}
