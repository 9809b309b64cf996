import { randomUUID } from 'node:crypto';
import type mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../shared/events/schemas.ts';
import { TargetError } from '../../shared/lease/errors.ts';
import type { LeaseContext } from '../../shared/lease/ports.ts';
import { MysqlDriver } from '../../shared/targets/mysql/driver.ts';
import { parseMysqlSettings } from '../../shared/targets/mysql/settings.ts';
import { adminQuery, connectWith, errnoOf, MARIADB_AVAILABLE, sessionCount, userExists, useEmbeddedMariadb } from '../support/mariadb.ts';

const db = useEmbeddedMariadb();
let driver: MysqlDriver;
const READ: Grant = { target: 'orders-db', access: 'read' };
const WRITE: Grant = { target: 'orders-db', access: 'write' };

function lease(): LeaseContext {
  return { taskId: `task-${randomUUID()}`, workload: 'spiffe://demo.local/w', expiresAt: Date.now() + 600_000, durationSeconds: 600 };
}

async function issued(grant: Grant, d = driver) {
  const l = lease();
  const externalId = d.externalId(l.taskId, grant);
  const cred = await d.issue({ lease: l, grant, externalId });
  return { cred, ref: { taskId: l.taskId, grant, externalId, metadata: cred.metadata } };
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;

describe.skipIf(!MARIADB_AVAILABLE)('mysql target under load', () => {
  beforeAll(() => {
    driver = new MysqlDriver('orders-db', parseMysqlSettings(db().settings), db().access);
  });
  afterAll(async () => {
    await driver?.close();
  });

  it('revoke and verify cost, one held session each (sequential, 20 credentials)', async () => {
    const revokeMs: number[] = [];
    const verifyMs: number[] = [];
    for (let i = 0; i < 20; i++) {
      const { cred, ref } = await issued(i % 2 ? WRITE : READ);
      const held = await connectWith(cred.secret);
      await held.query('SELECT 1');
      let t0 = performance.now();
      await driver.revoke(ref);
      revokeMs.push(performance.now() - t0);
      t0 = performance.now();
      const verdict = await driver.verify({ ...ref, secret: cred.secret });
      verifyMs.push(performance.now() - t0);
      expect(verdict).toBe('rejected');
      expect(await errnoOf(held.query('SELECT 1'))).not.toBeUndefined();
      held.destroy();
    }
    const f = (x: number) => x.toFixed(1);
    console.info(
      `mysql (MariaDB 10.11, loopback) revoke with one held session: median ${f(pct(revokeMs, 50))} ms, p95 ${f(pct(revokeMs, 95))} ms; ` +
        `verify (login refused + process list): median ${f(pct(verifyMs, 50))} ms, p95 ${f(pct(verifyMs, 95))} ms`,
    );
    expect(pct(revokeMs, 50)).toBeLessThan(1_000);
  });

  it('logins racing the revoke do not survive it', async () => {
    const { cred, ref } = await issued(READ);
    const kept: mysql.Connection[] = [];
    let stop = false;
    let logins = 0;
    const worker = async () => {
      while (!stop) {
        try {
          kept.push(await connectWith(cred.secret));
          logins++;
        } catch {
          await new Promise((r) => setTimeout(r, 2));
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    // Until the workers hold sessions (a loaded machine can take a while for the first).
    for (let waited = 0; logins < 3 && waited < 10_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    expect(logins).toBeGreaterThan(0);
    const before = logins;
    const t0 = Date.now();
    await driver.revoke(ref);
    const ms = Date.now() - t0;
    stop = true;
    await Promise.all(workers);
    console.info(`mysql revoke under login pressure: ${ms} ms, ${before} logins before, ${logins - before} during`);
    expect(await sessionCount(db(), ref.externalId)).toBe(0);
    const after = await Promise.all(kept.map((c) => errnoOf(c.query('SELECT 1'))));
    expect(after.every((e) => e !== undefined)).toBe(true);
    for (const c of kept) c.destroy();
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
  });

  it('20 parallel lifecycles with held sessions leave no account and no session', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const { cred, ref } = await issued(i % 2 ? WRITE : READ);
        const c = await connectWith(cred.secret);
        await c.query('SELECT COUNT(*) FROM orders.orders');
        await driver.revoke(ref);
        const after = await errnoOf(c.query('SELECT 1'));
        c.destroy();
        return { after, verdict: await driver.verify({ ...ref, secret: cred.secret }) };
      }),
    );
    expect(results.every((r) => r.after !== undefined)).toBe(true);
    expect(results.map((r) => r.verdict)).toEqual(Array(20).fill('rejected'));
    // A refused verify login leaves the process list a moment after its client got the error.
    await expect.poll(() => driver.listManaged(), { timeout: 2_000 }).toEqual([]);
    expect(await adminQuery(db(), "SELECT ID FROM information_schema.PROCESSLIST WHERE USER LIKE 'tl\\_%'")).toEqual([]);
  });

  it('a least-privilege admin cannot set a default role on MariaDB: the issue fails for good and leaves no account', async () => {
    const pw = randomUUID();
    await adminQuery(
      db(),
      `CREATE USER 'tl_admin3'@'%' IDENTIFIED BY '${pw}';
       GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'tl_admin3'@'%';
       GRANT SELECT ON mysql.global_priv TO 'tl_admin3'@'%';
       GRANT orders_write TO 'tl_admin3'@'%' WITH ADMIN OPTION`,
    );
    const limited = new MysqlDriver('orders-db', parseMysqlSettings({ ...db().settings, user: 'tl_admin3', password: pw }), {
      write: db().access.write,
    });
    try {
      const l = lease();
      const externalId = limited.externalId(l.taskId, WRITE);
      const err = await limited.issue({ lease: l, grant: WRITE, externalId }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TargetError);
      expect((err as TargetError).retryable).toBe(false);
      expect((err as Error).message).toMatch(/\(1044\).*'mysql'/);
      expect(await userExists(db(), externalId)).toBe(false);
    } finally {
      await limited.close();
      await adminQuery(db(), "DROP USER 'tl_admin3'@'%'");
    }
  });
});
