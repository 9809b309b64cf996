import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../shared/events/schemas.ts';
import { TargetError } from '../../shared/lease/errors.ts';
import type { LeaseContext, TargetDriver } from '../../shared/lease/ports.ts';
import { postgresDriverFactory } from '../../shared/targets/postgres/driver.ts';
import { parsePostgresSettings } from '../../shared/targets/postgres/settings.ts';
import { adminQuery, connectWith, sessionCount, sqlStateOf, useEmbeddedPostgres } from '../support/postgres.ts';

const db = useEmbeddedPostgres();
let driver: TargetDriver;

const grants: Grant[] = [
  { target: 'orders-db', access: 'read' },
  { target: 'orders-db', access: 'write' },
];

function lease(): LeaseContext {
  return { taskId: `task-${randomUUID()}`, workload: 'spiffe://demo.local/w', expiresAt: Date.now() + 600_000, durationSeconds: 600 };
}

beforeAll(() => {
  driver = postgresDriverFactory.create({ name: 'orders-db', settings: parsePostgresSettings(db().settings), access: db().access }, {});
});
afterAll(async () => {
  await driver?.close?.();
});

describe('concurrency', () => {
  it('20 issues and revokes in parallel leave no role and no session behind', async () => {
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const l = lease();
        const grant = grants[i % 2]!;
        const externalId = driver.externalId(l.taskId, grant);
        const cred = await driver.issue({ lease: l, grant, externalId });
        const c = await connectWith(cred.secret);
        const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM orders');
        // Keep the connection open through the revoke: it must be cut.
        const ref = { taskId: l.taskId, grant, externalId, metadata: cred.metadata };
        await driver.revoke(ref);
        const after = await sqlStateOf(c.query('SELECT 1'));
        await c.end().catch(() => undefined);
        return { n: rows[0]?.n ?? 0, after, verdict: await driver.verify({ ...ref, secret: cred.secret }) };
      }),
    );
    const elapsed = Date.now() - started;
    expect(results.every((r) => r.n >= 4)).toBe(true);
    expect(results.every((r) => r.after !== undefined)).toBe(true);
    expect(results.map((r) => r.verdict)).toEqual(Array(20).fill('rejected'));
    expect(await driver.listManaged?.()).toEqual([]);
    const sessions = await adminQuery(db(), "SELECT 1 FROM pg_stat_activity WHERE usename LIKE 'tl\\_%'");
    expect(sessions).toEqual([]);
    console.info(`20 parallel issue+connect+revoke+verify: ${elapsed} ms`);
  });

  it('logins racing the revoke do not survive it', async () => {
    const l = lease();
    const grant = grants[0]!;
    const externalId = driver.externalId(l.taskId, grant);
    const cred = await driver.issue({ lease: l, grant, externalId });
    const ref = { taskId: l.taskId, grant, externalId, metadata: cred.metadata };

    // Workers keep logging in while the revoke runs; every connection they get is kept open.
    const kept: pg.Client[] = [];
    let stop = false;
    let logins = 0;
    const worker = async () => {
      while (!stop) {
        try {
          const c = await connectWith(cred.secret);
          logins++;
          kept.push(c);
        } catch {
          await new Promise((r) => setTimeout(r, 2));
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await new Promise((r) => setTimeout(r, 100));
    expect(logins).toBeGreaterThan(0);
    const t0 = Date.now();
    const before = logins;
    await driver.revoke(ref);
    const revokeMs = Date.now() - t0;
    stop = true;
    console.info(`revoke under login pressure: ${revokeMs} ms, ${before} logins before, ${logins - before} during`);
    await Promise.all(workers);

    expect(await sessionCount(db(), externalId)).toBe(0);
    const states = await Promise.all(kept.map((c) => sqlStateOf(c.query('SELECT 1'))));
    expect(states.every((s) => s !== undefined)).toBe(true);
    await Promise.all(kept.map((c) => c.end().catch(() => undefined)));
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
  });

  it('concurrent revokes of the same credential both succeed', async () => {
    const l = lease();
    const grant = grants[1]!;
    const externalId = driver.externalId(l.taskId, grant);
    const cred = await driver.issue({ lease: l, grant, externalId });
    const c = await connectWith(cred.secret);
    const ref = { taskId: l.taskId, grant, externalId, metadata: cred.metadata };
    await Promise.all([driver.revoke(ref), driver.revoke(ref), driver.revoke(ref)]);
    await c.end().catch(() => undefined);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
  });
});

describe('outage', () => {
  it('while the server is down: verify inconclusive, revoke fails retryably; after restart it completes', async () => {
    const l = lease();
    const grant = grants[0]!;
    const externalId = driver.externalId(l.taskId, grant);
    const cred = await driver.issue({ lease: l, grant, externalId });
    const ref = { taskId: l.taskId, grant, externalId, metadata: cred.metadata };

    await db().stopServer();
    expect(db().isRunning()).toBe(false);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('inconclusive');
    expect(await driver.verify(ref)).toBe('inconclusive');
    const err = await driver.revoke(ref).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetError);
    expect((err as TargetError).retryable).toBe(true);
    expect((err as Error).message).not.toContain(cred.secret.password);

    await db().startServer();
    // The role survived the restart (data dir kept) and still works until revoked.
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('still-valid');
    await driver.revoke(ref);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
    await db().restart();
    expect(await driver.listManaged?.()).toEqual([]);
  });
});
