import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../shared/events/schemas.ts';
import { TargetError } from '../../shared/lease/errors.ts';
import type { IssuedCredential, LeaseContext } from '../../shared/lease/ports.ts';
import { MysqlDriver, mysqlDriverFactory } from '../../shared/targets/mysql/driver.ts';
import { parseMysqlSettings } from '../../shared/targets/mysql/settings.ts';
import { adminQuery, connectWith, errnoOf, MARIADB_AVAILABLE, sessionCount, userExists, useEmbeddedMariadb } from '../support/mariadb.ts';

const db = useEmbeddedMariadb();
let driver: MysqlDriver;

const READ: Grant = { target: 'orders-db', access: 'read' };
const WRITE: Grant = { target: 'orders-db', access: 'write' };
const DAY = 86_400_000;
/** A login of a dropped user: 1045, or (MariaDB, at random, so probes cannot tell users apart) 1698. */
const DENIED = [1045, 1698];

function lease(taskId = `task-${randomUUID()}`, ttlMs = 10 * 60_000): LeaseContext {
  return { taskId, workload: 'spiffe://demo.local/worker', expiresAt: Date.now() + ttlMs, durationSeconds: ttlMs / 1000 };
}

async function issue(grant: Grant, l = lease(), d: MysqlDriver = driver) {
  const externalId = d.externalId(l.taskId, grant);
  const cred: IssuedCredential = await d.issue({ lease: l, grant, externalId });
  const ref = { taskId: l.taskId, grant, externalId, metadata: cred.metadata, naturalExpiry: cred.naturalExpiry };
  return { lease: l, externalId, cred, ref, withSecret: { ...ref, secret: cred.secret } };
}

/** Wall time of one call, for the report. */
async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const out = await fn();
  return [out, Math.round((performance.now() - t0) * 10) / 10];
}

const timings: Record<string, number[]> = { revoke: [], verify: [] };

describe.skipIf(!MARIADB_AVAILABLE)('mysql target on a real MariaDB', () => {
  beforeAll(() => {
    driver = mysqlDriverFactory.create(
      { name: 'orders-db', settings: parseMysqlSettings({ ...db().settings, flavor: 'auto' }), access: db().access },
      {},
    ) as MysqlDriver;
  });
  afterAll(async () => {
    await driver?.close();
    console.info(`mysql revoke ms: ${timings.revoke!.join(', ')}; verify ms: ${timings.verify!.join(', ')}`);
  });

  describe('issue', () => {
    it('read (a grant list): logs in, reads the table, cannot write it or see another schema', async () => {
      const { cred, ref } = await issue(READ);
      expect(Object.keys(cred.secret).sort()).toEqual(['host', 'password', 'port', 'username']);
      expect(cred.secret.username).toBe(ref.externalId);
      expect(ref.externalId.length).toBeLessThanOrEqual(32);
      expect(Buffer.from(cred.secret.password ?? '', 'base64url').length).toBeGreaterThanOrEqual(32);
      const c = await connectWith(cred.secret);
      try {
        const [rows] = await c.query('SELECT COUNT(*) AS n FROM orders.orders');
        expect(Number((rows as Array<{ n: number }>)[0]?.n)).toBeGreaterThanOrEqual(4);
        expect(await errnoOf(c.query("INSERT INTO orders.orders (item, qty) VALUES ('x', 1)"))).toBe(1142);
        expect(await errnoOf(c.query('DELETE FROM orders.orders'))).toBe(1142);
        expect(await errnoOf(c.query('SELECT COUNT(*) FROM mysql.global_priv'))).toBe(1142);
        expect(await errnoOf(c.query('CREATE TABLE reports.x (v INT)'))).toBe(1142);
        expect(await errnoOf(c.query("CREATE USER 'evil'@'%'"))).toBe(1227);
      } finally {
        await c.end();
      }
      await driver.revoke(ref);
    });

    it('write (a role, made the default role): inserts, updates, deletes from login on', async () => {
      const { cred, ref } = await issue(WRITE);
      const c = await connectWith(cred.secret);
      try {
        const [role] = await c.query('SELECT CURRENT_ROLE() AS r');
        expect((role as Array<{ r: string }>)[0]?.r).toBe('orders_write');
        const [ins] = await c.query("INSERT INTO orders.orders (item, qty) VALUES ('kiwi', 9)");
        const id = (ins as { insertId: number }).insertId;
        expect(id).toBeGreaterThan(0);
        expect(((await c.query('UPDATE orders.orders SET qty = 10 WHERE id = ?', [id]))[0] as { affectedRows: number }).affectedRows).toBe(
          1,
        );
        expect(((await c.query('DELETE FROM orders.orders WHERE id = ?', [id]))[0] as { affectedRows: number }).affectedRows).toBe(1);
        // Not more than the role: no other schema, no account administration.
        expect(await errnoOf(c.query('CREATE TABLE reports.x (v INT)'))).toBe(1142);
        expect(await errnoOf(c.query('SELECT COUNT(*) FROM mysql.global_priv'))).toBe(1142);
      } finally {
        await c.end();
      }
      await driver.revoke(ref);
    });

    it('the account: password expiry at the lease end rounded up to days, native hash, no global privilege', async () => {
      const { cred, ref } = await issue(READ, lease(undefined, 36 * 3_600_000));
      const [row] = await adminQuery<{ priv: Record<string, unknown> }>(db(), 'SELECT Priv AS priv FROM mysql.global_priv WHERE User = ?', [
        ref.externalId,
      ]);
      const priv = row!.priv;
      // 36 hours → 2 days: day-granular, never shorter than the lease.
      expect(priv.password_lifetime).toBe(2);
      expect(ref.metadata?.passwordExpireDays).toBe('2');
      expect(priv.access).toBe(0);
      expect(priv.plugin).toBe('mysql_native_password');
      expect(String(priv.authentication_string)).toMatch(/^\*[0-9A-F]{40}$/);
      expect(JSON.stringify(priv)).not.toContain(cred.secret.password);
      expect(cred.naturalExpiry).toBeGreaterThanOrEqual(Date.now() + 2 * DAY - 60_000);
      await driver.revoke(ref);
    });

    it('an expired password is not a dead credential: the session is sandboxed and may SET PASSWORD', async () => {
      const { cred, ref, withSecret } = await issue(READ);
      await adminQuery(db(), `ALTER USER '${ref.externalId}'@'%' PASSWORD EXPIRE`);
      const c = await connectWith(cred.secret);
      expect(await errnoOf(c.query('SELECT 1'))).toBe(1820);
      // Without disconnect_on_expired_password the holder just picks a new password and goes on.
      await c.query("SET PASSWORD = PASSWORD('chosen-by-the-task')");
      expect(await errnoOf(c.query('SELECT 1'))).toBeUndefined();
      // verify does not take an expired password for a refusal.
      expect(await driver.verify(withSecret)).toBe('still-valid');
      await driver.revoke(ref);
      expect(await errnoOf(c.query('SELECT 1'))).not.toBeUndefined();
      c.destroy();
      expect(await driver.verify(withSecret)).toBe('rejected');
    });

    it('issuing the same credential again re-keys the account (crash retry)', async () => {
      const l = lease();
      const first = await issue(READ, l);
      const second = await issue(READ, l);
      expect(second.externalId).toBe(first.externalId);
      expect(second.cred.secret.password).not.toBe(first.cred.secret.password);
      expect(await errnoOf(connectWith(first.cred.secret))).toBe(1045);
      (await connectWith(second.cred.secret)).destroy();
      await driver.revoke(second.ref);
      expect(await userExists(db(), first.externalId)).toBe(false);
    });

    it('an unknown access or a missing role fails without retry and leaves no account', async () => {
      const l = lease();
      const grant = { target: 'orders-db', access: 'admin' };
      const err = await driver.issue({ lease: l, grant, externalId: driver.externalId(l.taskId, grant) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TargetError);
      expect((err as TargetError).retryable).toBe(false);

      const odd = new MysqlDriver('orders-db', parseMysqlSettings(db().settings), { read: { role: 'no_such_role' } });
      try {
        const id = odd.externalId(l.taskId, READ);
        const e2 = await odd.issue({ lease: l, grant: READ, externalId: id }).catch((e: unknown) => e);
        expect(e2).toBeInstanceOf(TargetError);
        expect((e2 as TargetError).retryable).toBe(false);
        expect((e2 as Error).message).toMatch(/\(1959\)/);
        expect(await userExists(db(), id)).toBe(false);
      } finally {
        await odd.close();
      }
    });
  });

  describe('revoke and verify', () => {
    it('still-valid before; revoke kills the open session, refuses logins, verify proves it', async () => {
      const { cred, ref, withSecret } = await issue(READ);
      expect(await driver.verify(withSecret)).toBe('still-valid');
      expect(await driver.verify(ref)).toBe('still-valid');
      expect(await sessionCount(db(), ref.externalId)).toBe(0); // verify's login was closed

      const open = await connectWith(cred.secret);
      await open.query('SELECT 1');
      expect(await sessionCount(db(), ref.externalId)).toBe(1);

      const [, revokeMs] = await timed(() => driver.revoke(ref));
      timings.revoke!.push(revokeMs);

      expect(await errnoOf(open.query('SELECT COUNT(*) FROM orders.orders'))).not.toBeUndefined();
      open.destroy();
      expect(DENIED).toContain(await errnoOf(connectWith(cred.secret)));
      expect(await userExists(db(), ref.externalId)).toBe(false);
      expect(await sessionCount(db(), ref.externalId)).toBe(0);
      const [verdict, verifyMs] = await timed(() => driver.verify(withSecret));
      timings.verify!.push(verifyMs);
      expect(verdict).toBe('rejected');
      expect(await driver.verify(ref)).toBe('rejected');
    });

    it('DROP USER alone leaves the session working with its role (Vault #10480); verify says still-valid until the revoke kills it', async () => {
      const { cred, ref, withSecret } = await issue(WRITE);
      const open = await connectWith(cred.secret);
      // Half a revocation by hand, what a broker without KILL does: lock, drop, no kill.
      await adminQuery(db(), `ALTER USER '${ref.externalId}'@'%' ACCOUNT LOCK; DROP USER '${ref.externalId}'@'%'`);
      expect(DENIED).toContain(await errnoOf(connectWith(cred.secret)));
      expect(await userExists(db(), ref.externalId)).toBe(false);
      // The session outlives its account, privileges of its default role included.
      const [rows] = await open.query('SELECT COUNT(*) AS n FROM orders.orders');
      expect(Number((rows as Array<{ n: number }>)[0]?.n)).toBeGreaterThanOrEqual(1);
      await open.query("INSERT INTO orders.orders (item, qty) VALUES ('after-drop', 1)");
      // A refused login is not enough.
      expect(await driver.verify(withSecret)).toBe('still-valid');
      expect(await driver.verify(ref)).toBe('still-valid');
      expect(await driver.listManaged()).toContain(ref.externalId);

      await driver.revoke(ref);
      expect(await errnoOf(open.query('SELECT 1'))).not.toBeUndefined();
      open.destroy();
      expect(await sessionCount(db(), ref.externalId)).toBe(0);
      expect(await driver.verify(withSecret)).toBe('rejected');
      await adminQuery(db(), "DELETE FROM orders.orders WHERE item = 'after-drop'");
    });

    it('a locked account with no session left: the login is refused with 4151 (matched by errno), and that proves it', async () => {
      const { cred, ref, withSecret } = await issue(READ);
      await adminQuery(db(), `ALTER USER '${ref.externalId}'@'%' ACCOUNT LOCK`);
      const refused = await connectWith(cred.secret).catch((e: unknown) => e as { errno?: number; code?: string });
      expect((refused as { errno?: number }).errno).toBe(4151);
      expect(await driver.verify(withSecret)).toBe('rejected');
      // Without the password a locked leftover is a half-done revoke, not a proof.
      expect(await driver.verify(ref)).toBe('inconclusive');
      await driver.revoke(ref);
      expect(await driver.verify(ref)).toBe('rejected');
    });

    it('many sessions, some mid-query, all end with the revoke', async () => {
      const { cred, ref, withSecret } = await issue(READ);
      const conns = await Promise.all(Array.from({ length: 6 }, () => connectWith(cred.secret)));
      const sleeping = conns.slice(0, 3).map((c) => errnoOf(c.query('SELECT SLEEP(30)')));
      await new Promise((r) => setTimeout(r, 100));
      expect(await sessionCount(db(), ref.externalId)).toBe(6);
      const [, ms] = await timed(() => driver.revoke(ref));
      timings.revoke!.push(ms);
      expect(ms).toBeLessThan(5_000);
      await Promise.all(sleeping);
      for (const c of conns) {
        expect(await errnoOf(c.query('SELECT 1'))).not.toBeUndefined();
        c.destroy();
      }
      expect(await sessionCount(db(), ref.externalId)).toBe(0);
      const [v, vms] = await timed(() => driver.verify(withSecret));
      timings.verify!.push(vms);
      expect(v).toBe('rejected');
    });

    it('revoke is idempotent: twice, concurrently, and for a user never issued', async () => {
      const { ref, withSecret } = await issue(READ);
      await driver.revoke(ref);
      await driver.revoke(ref);
      const second = await issue(WRITE);
      const c = await connectWith(second.cred.secret);
      await Promise.all([driver.revoke(second.ref), driver.revoke(second.ref), driver.revoke(second.ref)]);
      c.destroy();
      expect(await driver.verify(second.withSecret)).toBe('rejected');
      const l = lease();
      const never = { taskId: l.taskId, grant: READ, externalId: driver.externalId(l.taskId, READ) };
      await driver.revoke(never);
      expect(await driver.verify(never)).toBe('rejected');
      expect(await driver.verify(withSecret)).toBe('rejected');
    });

    it('refuses to revoke or verify an account that is not tasklease-managed', async () => {
      for (const externalId of ['tasklease_admin', 'root', 'orders_write', 'tl_notahash', "tl_'; DROP USER root; --"]) {
        const err = await driver.revoke({ taskId: 't', grant: READ, externalId }).catch((e: unknown) => e);
        expect(err, externalId).toBeInstanceOf(TargetError);
        expect((err as TargetError).retryable).toBe(false);
      }
      expect(await userExists(db(), 'tasklease_admin')).toBe(true);
    });
  });

  describe('what the task made', () => {
    it('a table the task created stays in the shared schema, usable by the role, and nobody gains the admin', async () => {
      const first = await issue(WRITE);
      const table = `scratch_${first.externalId.slice(-8)}`;
      const c = await connectWith(first.cred.secret);
      await c.query(`CREATE TABLE orders.${table} (v INT)`);
      await c.query(`INSERT INTO orders.${table} VALUES (1), (2)`);
      // A view runs as its definer: after the revoke it must fail, never run as anyone else.
      await c.query(`CREATE VIEW orders.v_${table} AS SELECT v FROM orders.${table}`);
      c.destroy();
      await driver.revoke(first.ref);

      // MySQL tables have no owner: the table stays, and the next task of the same role uses it.
      const next = await issue(WRITE);
      const d = await connectWith(next.cred.secret);
      try {
        const [rows] = await d.query(`SELECT COUNT(*) AS n FROM orders.${table}`);
        expect(Number((rows as Array<{ n: number }>)[0]?.n)).toBe(2);
        await d.query(`INSERT INTO orders.${table} VALUES (3)`);
        // The task's view runs as its definer, who no longer exists: it fails (the server hides why
        // from a non-admin), and never runs as anyone else.
        expect(await errnoOf(d.query(`SELECT * FROM orders.v_${table}`))).toBe(1045);
      } finally {
        d.destroy();
      }
      const [view] = await adminQuery<{ definer: string }>(
        db(),
        'SELECT DEFINER AS definer FROM information_schema.VIEWS WHERE TABLE_NAME = ?',
        [`v_${table}`],
      );
      expect(view?.definer).toBe(`${first.externalId}@%`);
      expect(await errnoOf(adminQuery(db(), `SELECT * FROM orders.v_${table}`))).toBe(1449);
      // Revoke touched no grant of the role or the admin.
      const grants = await adminQuery<Record<string, string>>(db(), 'SHOW GRANTS FOR orders_write');
      expect(JSON.stringify(grants)).toContain('SELECT, INSERT, UPDATE, DELETE, CREATE');
      await driver.revoke(next.ref);
    });
  });

  describe('hostile names and leaks', () => {
    it('hostile task ids become prefix+hash names; the general log shows neither task text nor password', async () => {
      const logFile = path.join(path.dirname(db().dataDir), 'general.log');
      await adminQuery(db(), `SET GLOBAL general_log_file = '${logFile}'; SET GLOBAL general_log = 1`);
      const hostile = [
        "x'; DROP USER 'tasklease_admin'@'%'; --",
        'back`tick`',
        'quote"d',
        'ünï😀cødé',
        '\\\\',
        "'@'evil.example",
        'a'.repeat(200),
      ];
      const seen: string[] = [];
      try {
        for (const taskId of hostile) {
          const { cred, ref, withSecret } = await issue(READ, lease(taskId));
          expect(ref.externalId).toMatch(/^tl_[0-9a-f]{29}$/);
          seen.push(cred.secret.password!);
          const c = await connectWith(cred.secret);
          await driver.revoke(ref);
          c.destroy();
          expect(await driver.verify(withSecret)).toBe('rejected');
        }
      } finally {
        await adminQuery(db(), 'SET GLOBAL general_log = 0');
      }
      const log = await readFile(logFile, 'utf8');
      expect(log).toContain('CREATE USER IF NOT EXISTS');
      expect(log).toContain('KILL CONNECTION');
      for (const taskId of hostile) expect(log).not.toContain(taskId);
      for (const pw of seen) expect(log).not.toContain(pw);
      expect(await userExists(db(), 'tasklease_admin')).toBe(true);
    });

    it('errors never carry the password or its hash', async () => {
      const odd = new MysqlDriver('orders-db', parseMysqlSettings(db().settings), {
        read: { grants: [{ privileges: ['SELECT'], on: 'no_such_schema.no_such_table' }] },
      });
      try {
        const l = lease();
        const err = (await odd
          .issue({ lease: l, grant: READ, externalId: odd.externalId(l.taskId, READ) })
          .catch((e: unknown) => e)) as Error;
        expect(err).toBeInstanceOf(TargetError);
        expect(err.message).toMatch(/\(1146\)/);
        expect(JSON.stringify({ ...err, message: err.message, stack: err.stack })).not.toMatch(/\*[0-9A-F]{40}/);
        expect((err as { cause?: unknown }).cause).toBeUndefined();
      } finally {
        await odd.close();
      }
    });
  });

  describe('reconciliation and concurrency', () => {
    it("listManaged finds an orphan made behind the broker's back, ignores humans, and forgets it once revoked", async () => {
      const l = lease();
      const orphan = driver.externalId(l.taskId, READ);
      await adminQuery(db(), `CREATE USER '${orphan}'@'10.%' IDENTIFIED BY 'whatever-it-was'; CREATE USER 'tl_human'@'%'`);
      try {
        const managed = await driver.listManaged();
        expect(managed).toContain(orphan);
        expect(managed).not.toContain('tl_human');
        // Revoke by name drops it on whatever host it was made.
        await driver.revoke({ taskId: l.taskId, grant: READ, externalId: orphan });
        expect(await userExists(db(), orphan)).toBe(false);
        expect(await driver.listManaged()).not.toContain(orphan);
      } finally {
        await adminQuery(db(), "DROP USER IF EXISTS 'tl_human'@'%'");
      }
    });

    it('a least-privilege admin (no SUPER, no write on mysql.*) with adminPoolMax 2: 12 parallel lifecycles, never more than 2 admin connections', async () => {
      const pw = randomUUID();
      await adminQuery(
        db(),
        `CREATE USER 'tl_admin2'@'%' IDENTIFIED BY '${pw}';
         GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'tl_admin2'@'%';
         GRANT SELECT ON mysql.global_priv TO 'tl_admin2'@'%';
         GRANT SELECT ON orders.* TO 'tl_admin2'@'%' WITH GRANT OPTION`,
      );
      const limited = new MysqlDriver(
        'orders-db',
        parseMysqlSettings({ ...db().settings, user: 'tl_admin2', password: pw, adminPoolMax: 2 }),
        {
          read: db().access.read,
        },
      );
      let peak = 0;
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const rows = await adminQuery<{ n: number }>(
            db(),
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = 'tl_admin2'",
          );
          peak = Math.max(peak, Number(rows[0]?.n ?? 0));
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      try {
        const verdicts = await Promise.all(
          Array.from({ length: 12 }, async () => {
            const { cred, ref, withSecret } = await issue(READ, lease(), limited);
            const c = await connectWith(cred.secret);
            await c.query('SELECT COUNT(*) FROM orders.orders');
            await limited.revoke(ref);
            const after = await errnoOf(c.query('SELECT 1'));
            c.destroy();
            return { after, verdict: await limited.verify(withSecret) };
          }),
        );
        expect(verdicts.every((v) => v.after !== undefined)).toBe(true);
        expect(verdicts.map((v) => v.verdict)).toEqual(Array(12).fill('rejected'));
        await expect.poll(() => limited.listManaged(), { timeout: 2_000 }).toEqual([]);
      } finally {
        watching = false;
        await watcher;
        await limited.close();
        await adminQuery(db(), "DROP USER 'tl_admin2'@'%'");
      }
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(2);
    });
  });
});
