import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../shared/events/schemas.ts';
import { PostgresDriver } from '../../shared/targets/postgres/driver.ts';
import { parsePostgresSettings } from '../../shared/targets/postgres/settings.ts';
import { connectWith, useEmbeddedPostgres } from '../support/postgres.ts';

/**
 * What one credential costs the database, counted on the driver's real admin pool against a real
 * PostgreSQL: checkouts (pool 'acquire'), round trips (client.query calls) and SQL statements
 * (one Result per statement, a simple-protocol batch returns several). Counts, never times.
 */
const db = useEmbeddedPostgres();
let driver: PostgresDriver;
const READ: Grant = { target: 'orders-db', access: 'read' };

interface Counts {
  checkouts: number;
  roundTrips: number;
  statements: number;
  logins: number;
  sql: string[];
}

const counts: Counts = { checkouts: 0, roundTrips: 0, statements: 0, logins: 0, sql: [] };
const counted = new WeakSet<object>();

function instrument(d: PostgresDriver): void {
  d.pool.on('acquire', (client: pg.PoolClient) => {
    counts.checkouts++;
    if (counted.has(client)) return;
    counted.add(client);
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    (client as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = async (...args: unknown[]) => {
      counts.roundTrips++;
      const text = typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: string }).text);
      counts.sql.push(text.replace(/\s+/g, ' ').slice(0, 90));
      try {
        const result = await query(...args);
        counts.statements += Array.isArray(result) ? result.length : 1;
        return result;
      } catch (err) {
        counts.statements += 1;
        throw err;
      }
    };
  });
  const tryLogin = d.tryLogin.bind(d);
  d.tryLogin = (...args) => {
    counts.logins++;
    return tryLogin(...args);
  };
}

async function measure(fn: () => Promise<unknown>): Promise<Omit<Counts, 'sql'> & { sql: string[] }> {
  Object.assign(counts, { checkouts: 0, roundTrips: 0, statements: 0, logins: 0, sql: [] });
  await fn();
  return { ...counts, sql: [...counts.sql] };
}

function newRef() {
  const taskId = `task-${randomUUID()}`;
  const lease = { taskId, workload: 'spiffe://demo.local/worker', expiresAt: Date.now() + 600_000, durationSeconds: 600 };
  return { lease, grant: READ, externalId: driver.externalId(taskId, READ) };
}

beforeAll(async () => {
  driver = new PostgresDriver('orders-db', parsePostgresSettings(db().settings), db().access);
  instrument(driver);
  // The first issue of a driver learns which logging settings the admin may change: not the steady state.
  const warm = newRef();
  const cred = await driver.issue(warm);
  await driver.revoke({ taskId: warm.lease.taskId, grant: READ, externalId: warm.externalId, metadata: cred.metadata });
});
afterAll(async () => {
  await driver?.close();
});

const ofCounts = ({ checkouts, roundTrips, statements, logins }: Counts) => ({ checkouts, roundTrips, statements, logins });

describe('postgres driver round trips per credential', () => {
  // Before issue 13: issue 1 checkout / 7 statements, revoke 8 / 11 (+ 5 ms and 20 ms sleeps), verify 1 / 1 + a login.
  it('the common case: issue 1 checkout / 2 round trips, revoke 1 / 1, verify 1 / 1 and one login', async () => {
    const ctx = newRef();
    let cred!: Awaited<ReturnType<PostgresDriver['issue']>>;
    const issue = await measure(async () => {
      cred = await driver.issue(ctx);
    });
    const ref = { taskId: ctx.lease.taskId, grant: READ, externalId: ctx.externalId, metadata: cred.metadata };
    const revoke = await measure(() => driver.revoke(ref));
    let verdict = '';
    const verify = await measure(async () => {
      verdict = await driver.verify({ ...ref, secret: cred.secret });
    });
    expect(verdict).toBe('rejected');
    expect(cred.metadata?.roleOid).toMatch(/^[0-9]+$/);
    // BEGIN + logging settings; CREATE ROLE + its oid + COMMIT.
    expect(ofCounts(issue)).toEqual({ checkouts: 1, roundTrips: 2, statements: 5, logins: 0 });
    // BEGIN, signal sessions, REASSIGN OWNED, DROP OWNED, DROP ROLE, COMMIT, sweep after the commit.
    expect(ofCounts(revoke)).toEqual({ checkouts: 1, roundTrips: 1, statements: 7, logins: 0 });
    expect(ofCounts(verify)).toEqual({ checkouts: 1, roundTrips: 1, statements: 1, logins: 1 });
    // The password never reaches SQL text (the role gets a SCRAM verifier).
    expect([...issue.sql, ...revoke.sql, ...verify.sql].join('\n')).not.toContain(cred.secret.password);
  });

  it('a held session costs revoke at most one more round trip: the server waits for the backend to exit', async () => {
    const ctx = newRef();
    const cred = await driver.issue(ctx);
    const ref = { taskId: ctx.lease.taskId, grant: READ, externalId: ctx.externalId, metadata: cred.metadata };
    const held = await connectWith(cred.secret);
    const revoke = await measure(() => driver.revoke(ref));
    await expect(held.query('SELECT 1')).rejects.toThrow();
    await held.end().catch(() => undefined);
    // Signalled before the DDL, the backend is often gone by the sweep after the commit (one round
    // trip); when it is not, one more, in which the server waits for its exit.
    expect(revoke.checkouts).toBe(1);
    expect(revoke.roundTrips).toBeLessThanOrEqual(2);
    if (revoke.roundTrips === 2) {
      expect(revoke.statements).toBe(9);
      expect(revoke.sql[1]).toMatch(/^SELECT pg_terminate_backend\(pid, [0-9]+\) FROM unnest/);
    }
    const verify = await measure(async () => expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected'));
    expect(ofCounts(verify)).toEqual({ checkouts: 1, roundTrips: 1, statements: 1, logins: 1 });
  });

  it('an intent (no oid recorded) costs revoke one lookup; verify without the password is one statement', async () => {
    const ctx = newRef();
    await driver.issue(ctx);
    const ref = { taskId: ctx.lease.taskId, grant: READ, externalId: ctx.externalId };
    const revoke = await measure(() => driver.revoke(ref));
    expect(ofCounts(revoke)).toEqual({ checkouts: 1, roundTrips: 2, statements: 8, logins: 0 });
    const verify = await measure(async () => expect(await driver.verify(ref)).toBe('rejected'));
    expect(ofCounts(verify)).toEqual({ checkouts: 1, roundTrips: 1, statements: 1, logins: 0 });
  });
});
