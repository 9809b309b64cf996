import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Grant } from '../../shared/events/schemas.ts';
import { TargetError } from '../../shared/lease/errors.ts';
import type { IssuedCredential, LeaseContext, TargetDriver } from '../../shared/lease/ports.ts';
import { validateTargets } from '../../shared/policy/config.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import { PostgresDriver, postgresDriverFactory } from '../../shared/targets/postgres/driver.ts';
import { parsePostgresSettings } from '../../shared/targets/postgres/settings.ts';
import { adminQuery, connectWith, roleExists, sessionCount, sqlStateOf, useEmbeddedPostgres } from '../support/postgres.ts';
import { configWith } from './config-with.ts';

const db = useEmbeddedPostgres();
let driver: TargetDriver;

const READ: Grant = { target: 'orders-db', access: 'read' };
const WRITE: Grant = { target: 'orders-db', access: 'write' };

function lease(taskId = `task-${randomUUID()}`, ttlMs = 10 * 60_000): LeaseContext {
  return { taskId, workload: 'spiffe://demo.local/worker', expiresAt: Date.now() + ttlMs, durationSeconds: ttlMs / 1000 };
}

async function issue(grant: Grant, l = lease()) {
  const externalId = driver.externalId(l.taskId, grant);
  const cred = await driver.issue({ lease: l, grant, externalId });
  const ref = { taskId: l.taskId, grant, externalId, metadata: cred.metadata, naturalExpiry: cred.naturalExpiry };
  return { lease: l, externalId, cred, ref };
}

beforeAll(() => {
  driver = postgresDriverFactory.create({ name: 'orders-db', settings: parsePostgresSettings(db().settings), access: db().access }, {});
});
afterAll(async () => {
  await driver?.close?.();
});

describe('issue', () => {
  it('read grant: can connect and read, cannot write (42501)', async () => {
    const { cred, ref } = await issue(READ);
    expect(Object.keys(cred.secret).sort()).toEqual(['database', 'host', 'password', 'port', 'username']);
    expect(cred.secret.username).toBe(ref.externalId);
    expect(Buffer.from(cred.secret.password ?? '', 'base64url').length).toBeGreaterThanOrEqual(32);
    const c = await connectWith(cred.secret);
    try {
      const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM orders');
      expect(rows[0]?.n).toBeGreaterThanOrEqual(4);
      expect(await sqlStateOf(c.query("INSERT INTO orders (item, qty) VALUES ('x', 1)"))).toBe('42501');
      expect(await sqlStateOf(c.query('DELETE FROM orders'))).toBe('42501');
    } finally {
      await c.end();
    }
    await driver.revoke(ref);
  });

  it('write grant: can insert, update and delete', async () => {
    const { cred, ref } = await issue(WRITE);
    const c = await connectWith(cred.secret);
    try {
      const ins = await c.query<{ id: number }>("INSERT INTO orders (item, qty) VALUES ('kiwi', 9) RETURNING id");
      expect(ins.rows[0]?.id).toBeGreaterThan(0);
      expect((await c.query('UPDATE orders SET qty = 10 WHERE id = $1', [ins.rows[0]?.id])).rowCount).toBe(1);
      expect((await c.query('DELETE FROM orders WHERE id = $1', [ins.rows[0]?.id])).rowCount).toBe(1);
    } finally {
      await c.end();
    }
    await driver.revoke(ref);
  });

  it('sets VALID UNTIL to the lease expiry, a plain login role in the group, SCRAM-stored password', async () => {
    const { cred, ref, lease: l } = await issue(READ);
    expect(cred.naturalExpiry).toBe(l.expiresAt);
    const [row] = await adminQuery<{
      valid: Date;
      rolcanlogin: boolean;
      rolsuper: boolean;
      rolcreaterole: boolean;
      rolpassword: string;
      groups: string[];
    }>(
      db(),
      `SELECT a.rolvaliduntil AS valid, a.rolcanlogin, a.rolsuper, a.rolcreaterole, a.rolpassword,
              ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = a.oid)::text[] AS groups
         FROM pg_authid a WHERE a.rolname = $1`,
      [ref.externalId],
    );
    expect(row?.valid.getTime()).toBe(l.expiresAt);
    expect(row).toMatchObject({ rolcanlogin: true, rolsuper: false, rolcreaterole: false, groups: ['orders_read'] });
    expect(row?.rolpassword.startsWith('SCRAM-SHA-256$')).toBe(true);
    expect(row?.rolpassword).not.toContain(cred.secret.password);
    expect(ref.metadata?.roleOid).toMatch(/^[0-9]+$/);
    await driver.revoke(ref);
  });

  it('a past VALID UNTIL refuses the login', async () => {
    const { cred, ref } = await issue(READ, lease(undefined, -1_000));
    expect(await sqlStateOf(connectWith(cred.secret))).toBe('28P01');
    await driver.revoke(ref);
  });

  it('issuing the same credential again re-keys the existing role (crash retry)', async () => {
    const l = lease();
    const first = await issue(READ, l);
    const second = await issue(READ, l);
    expect(second.externalId).toBe(first.externalId);
    expect(second.cred.secret.password).not.toBe(first.cred.secret.password);
    expect(await sqlStateOf(connectWith(first.cred.secret))).toBe('28P01');
    const c = await connectWith(second.cred.secret);
    await c.end();
    await driver.revoke(second.ref);
    expect(await roleExists(db(), first.externalId)).toBe(false);
  });

  it('an unknown access or a missing group role fails without retry and creates nothing', async () => {
    const l = lease();
    const grant = { target: 'orders-db', access: 'admin' };
    const err = await driver.issue({ lease: l, grant, externalId: driver.externalId(l.taskId, grant) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetError);
    expect((err as TargetError).retryable).toBe(false);

    const odd = new PostgresDriver('orders-db', parsePostgresSettings(db().settings), { read: { groupRole: 'no_such_group' } });
    try {
      const id = odd.externalId(l.taskId, READ);
      const e2 = await odd.issue({ lease: l, grant: READ, externalId: id }).catch((e: unknown) => e);
      expect(e2).toBeInstanceOf(TargetError);
      expect((e2 as TargetError).retryable).toBe(false);
      expect((e2 as Error).message).toMatch(/42704/);
      expect(await roleExists(db(), id)).toBe(false);
    } finally {
      await odd.close();
    }
  });
});

describe('verify and revoke', () => {
  it('still-valid before revoke; after revoke the open connection is gone, logins refused, rejected', async () => {
    const { cred, ref } = await issue(READ);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('still-valid');
    expect(await driver.verify(ref)).toBe('still-valid');
    // The verify login was closed again.
    expect(await sessionCount(db(), ref.externalId)).toBe(0);

    const open = await connectWith(cred.secret);
    await open.query('SELECT 1');
    expect(await sessionCount(db(), ref.externalId)).toBe(1);

    await driver.revoke(ref);

    await expect(open.query('SELECT count(*) FROM orders')).rejects.toThrow();
    await open.end().catch(() => undefined);
    expect(await sqlStateOf(connectWith(cred.secret))).toBe('28P01');
    expect(await roleExists(db(), ref.externalId)).toBe(false);
    expect(await sessionCount(db(), ref.externalId)).toBe(0);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
    expect(await driver.verify(ref)).toBe('rejected');
  });

  it('a refused login is not enough: an open session makes verify still-valid', async () => {
    const { cred, ref } = await issue(READ);
    const open = await connectWith(cred.secret);
    try {
      // Half a revocation, done by hand: logins are refused but the session lives on.
      await adminQuery(db(), `ALTER ROLE "${ref.externalId}" NOLOGIN PASSWORD NULL`);
      expect(await sqlStateOf(connectWith(cred.secret))).toBe('28P01');
      expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('still-valid');
      expect((await open.query('SELECT 1 AS one')).rows[0]?.one).toBe(1);
    } finally {
      await driver.revoke(ref);
      await open.end().catch(() => undefined);
    }
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
  });

  it('a session of a role dropped behind our back is still found (by oid) and terminated', async () => {
    const { cred, ref } = await issue(READ);
    const open = await connectWith(cred.secret);
    // PostgreSQL lets a role with open sessions be dropped; the session keeps working.
    await adminQuery(db(), `DROP ROLE "${ref.externalId}"`);
    expect((await open.query('SELECT 1 AS one')).rows[0]?.one).toBe(1);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('still-valid');
    await driver.revoke(ref);
    await expect(open.query('SELECT 1')).rejects.toThrow();
    await open.end().catch(() => undefined);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
  });

  it('a role that created a table and holds privileges in another schema is revoked cleanly', async () => {
    const { cred, ref } = await issue(WRITE);
    const role = `"${ref.externalId}"`;
    await adminQuery(
      db(),
      `CREATE SCHEMA IF NOT EXISTS reports;
       CREATE TABLE IF NOT EXISTS reports.summary (k text);
       GRANT CREATE ON SCHEMA public TO ${role};
       GRANT USAGE ON SCHEMA reports TO ${role};
       GRANT SELECT, INSERT ON reports.summary TO ${role};
       ALTER DEFAULT PRIVILEGES IN SCHEMA reports GRANT SELECT ON TABLES TO ${role};`,
    );
    const table = `task_scratch_${ref.externalId.slice(-8)}`;
    const c = await connectWith(cred.secret);
    await c.query(`CREATE TABLE ${table} (v int)`);
    await c.query(`INSERT INTO ${table} VALUES (1), (2)`);
    await c.query("INSERT INTO reports.summary VALUES ('done')");

    await driver.revoke(ref);
    await c.end().catch(() => undefined);

    expect(await roleExists(db(), ref.externalId)).toBe(false);
    // Handed to the grant's group role (which had every privilege the task had), never to the admin.
    const owner = await adminQuery<{ owner: string }>(db(), 'SELECT tableowner AS owner FROM pg_tables WHERE tablename = $1', [table]);
    expect(owner).toEqual([{ owner: db().access.write.groupRole }]);
    const left = await adminQuery(db(), 'SELECT 1 FROM pg_shdepend WHERE refobjid = $1::oid', [ref.metadata?.roleOid]);
    expect(left).toEqual([]);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
  });

  it('objects the role created in another database are released too', async () => {
    const { cred, ref } = await issue(READ);
    const role = `"${ref.externalId}"`;
    const exists = await adminQuery(db(), "SELECT 1 FROM pg_database WHERE datname = 'side'", [], 'postgres');
    if (exists.length === 0) await adminQuery(db(), 'CREATE DATABASE side', [], 'postgres');
    await adminQuery(db(), `GRANT CONNECT ON DATABASE side TO ${role}`, [], 'postgres');
    await adminQuery(db(), `GRANT CREATE ON SCHEMA public TO ${role}`, [], 'side');
    const c = await connectWith(cred.secret, 'side');
    await c.query('CREATE TABLE side_table (v int)');
    await c.end();

    await driver.revoke(ref);
    expect(await roleExists(db(), ref.externalId)).toBe(false);
    const owner = await adminQuery<{ owner: string }>(
      db(),
      "SELECT tableowner AS owner FROM pg_tables WHERE tablename = 'side_table'",
      [],
      'side',
    );
    expect(owner).toEqual([{ owner: db().access.read.groupRole }]);
  });

  it('revoke is idempotent: twice, and for a role never created', async () => {
    const { ref } = await issue(READ);
    await driver.revoke(ref);
    await driver.revoke(ref);
    const l = lease();
    const never = { taskId: l.taskId, grant: READ, externalId: driver.externalId(l.taskId, READ) };
    await driver.revoke(never);
    expect(await driver.verify(never)).toBe('rejected');
  });

  it('refuses to revoke or verify a role that is not tasklease-managed', async () => {
    for (const externalId of ['postgres', 'orders_read', 'tl_notahash', 'tl_"; DROP ROLE postgres; --']) {
      const err = await driver.revoke({ taskId: 't', grant: READ, externalId }).catch((e: unknown) => e);
      expect(err, externalId).toBeInstanceOf(TargetError);
      expect((err as TargetError).retryable).toBe(false);
    }
    expect(await roleExists(db(), 'orders_read')).toBe(true);
    expect(await roleExists(db(), 'postgres')).toBe(true);
  });

  it('listManaged lists only prefix+hash roles', async () => {
    await adminQuery(db(), 'CREATE ROLE tl_human NOLOGIN');
    const { ref } = await issue(READ);
    try {
      const managed = await driver.listManaged?.();
      expect(managed).toContain(ref.externalId);
      expect(managed).not.toContain('tl_human');
    } finally {
      await driver.revoke(ref);
      await adminQuery(db(), 'DROP ROLE tl_human');
    }
    expect(await driver.listManaged?.()).not.toContain(ref.externalId);
  });
});

describe('least-privilege admin (CREATEROLE, not superuser: the RDS shape)', () => {
  let limited: TargetDriver;
  const adminPassword = randomUUID();
  beforeAll(async () => {
    await adminQuery(
      db(),
      `CREATE ROLE tasklease_admin LOGIN CREATEROLE PASSWORD '${adminPassword}';
       GRANT orders_read, orders_write TO tasklease_admin WITH ADMIN OPTION;
       GRANT pg_signal_backend TO tasklease_admin;
       GRANT CONNECT ON DATABASE orders TO tasklease_admin;
       CREATE SCHEMA work AUTHORIZATION tasklease_admin;
       -- PostgreSQL 16+: lets the creator act as the roles it creates (REASSIGN/DROP OWNED need it).
       ALTER ROLE tasklease_admin SET createrole_self_grant = 'set, inherit';`,
    );
    limited = postgresDriverFactory.create(
      {
        name: 'orders-db',
        settings: parsePostgresSettings({ ...db().settings, user: 'tasklease_admin', password: adminPassword }),
        access: db().access,
      },
      {},
    );
  });
  afterAll(async () => {
    await limited?.close?.();
  });

  async function asLimited(sql: string) {
    const c = await connectWith({
      host: db().host,
      port: String(db().port),
      database: db().database,
      username: 'tasklease_admin',
      password: adminPassword,
    });
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  }

  it('revokes a role that owns a table in a schema the admin controls', async () => {
    const l = lease();
    const externalId = limited.externalId(l.taskId, WRITE);
    const cred = await limited.issue({ lease: l, grant: WRITE, externalId });
    const ref = { taskId: l.taskId, grant: WRITE, externalId, metadata: cred.metadata };
    await asLimited(`GRANT USAGE, CREATE ON SCHEMA work TO "${externalId}"`);
    const table = `owned_${externalId.slice(-8)}`;
    const c = await connectWith(cred.secret);
    await c.query(`CREATE TABLE work.${table} (v int)`);
    expect(await limited.verify({ ...ref, secret: cred.secret })).toBe('still-valid');
    await limited.revoke(ref);
    await expect(c.query('SELECT 1')).rejects.toThrow();
    await c.end().catch(() => undefined);
    expect(await limited.verify({ ...ref, secret: cred.secret })).toBe('rejected');
    expect(await roleExists(db(), externalId)).toBe(false);
    const owner = await adminQuery(db(), 'SELECT tableowner FROM pg_tables WHERE tablename = $1', [table]);
    expect(owner).toEqual([{ tableowner: db().access.write.groupRole }]);
  });

  it('a privilege the admin cannot revoke: the credential is dead, the error says why, and it is retried', async () => {
    const l = lease();
    const externalId = limited.externalId(l.taskId, READ);
    const cred = await limited.issue({ lease: l, grant: READ, externalId });
    const ref = { taskId: l.taskId, grant: READ, externalId, metadata: cred.metadata };
    // Granted by the superuser on a schema the admin does not own: DROP OWNED cannot take it back.
    await adminQuery(db(), `GRANT CREATE ON SCHEMA public TO "${externalId}"`);
    const open = await connectWith(cred.secret);

    const err = await limited.revoke(ref).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetError);
    expect((err as TargetError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/2BP01.*privileges for schema public/);
    // Everything that makes it a credential is gone already: no login, no session.
    await expect(open.query('SELECT 1')).rejects.toThrow();
    await open.end().catch(() => undefined);
    expect(await sqlStateOf(connectWith(cred.secret))).toBe('28P01');
    expect(await limited.verify({ ...ref, secret: cred.secret })).toBe('rejected');
    // …but the role is left over (reconciliation sees it) and verify without the secret does not call it done.
    expect(await limited.listManaged?.()).toContain(externalId);
    expect(await limited.verify(ref)).toBe('inconclusive');

    // An operator fixes the grant; the retried revoke completes.
    await adminQuery(db(), `REVOKE CREATE ON SCHEMA public FROM "${externalId}"`);
    await limited.revoke(ref);
    expect(await roleExists(db(), externalId)).toBe(false);
    expect(await limited.verify(ref)).toBe('rejected');
  });
});

describe('hostile input', () => {
  const hostile = ["o'reilly; DROP TABLE orders; --", 'a"b"c', 'back\\slash\\\\', '☃ ünïcødé 𝕏 \u202e', '\u0000\n\r', 'x'.repeat(10_240)];

  it('task text only reaches SQL as a hash; issue and revoke work', async () => {
    for (const taskId of hostile) {
      const { externalId, cred, ref } = await issue(READ, lease(taskId));
      expect(externalId).toMatch(/^tl_[0-9a-f]{40}$/);
      const c = await connectWith(cred.secret);
      await c.end();
      await driver.revoke(ref);
      expect(await roleExists(db(), externalId)).toBe(false);
    }
    expect((await adminQuery(db(), 'SELECT count(*)::int AS n FROM orders'))[0]?.n).toBeGreaterThanOrEqual(4);
  });

  it('a group role name with quotes is rejected by config, and is escaped if it gets through', async () => {
    const bad = 'orders_read"; DROP TABLE orders; --';
    // Config validation (validateTargets, which the registry runs before any create) refuses it.
    expect(() =>
      validateTargets(
        configWith({ 'orders-db': { kind: 'postgres', settings: db().settings, access: { read: { groupRole: bad } } } }),
        TARGET_KINDS,
      ),
    ).toThrow(/access\.read\.groupRole: /);
    // Bypassing validation: the name is quoted as one identifier, so it is just a missing role.
    const raw = new PostgresDriver('orders-db', parsePostgresSettings(db().settings), { read: { groupRole: bad } });
    try {
      const l = lease("'; DROP TABLE orders; --");
      const err = await raw.issue({ lease: l, grant: READ, externalId: raw.externalId(l.taskId, READ) }).catch((e: unknown) => e);
      expect((err as Error).message).toMatch(/42704/);
    } finally {
      await raw.close();
    }
    expect((await adminQuery(db(), "SELECT to_regclass('public.orders') AS t"))[0]?.t).toBe('orders');
  });
});

describe('secrecy', () => {
  it('no password in any error, console output or server log, even with log_statement=all', async () => {
    const captured: string[] = [];
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((m) =>
      vi.spyOn(console, m).mockImplementation((...args: unknown[]) => {
        captured.push(args.map((a) => (a instanceof Error ? `${a.message} ${a.stack}` : String(a))).join(' '));
      }),
    );
    await adminQuery(db(), "ALTER SYSTEM SET log_statement = 'all'");
    await adminQuery(db(), 'SELECT pg_reload_conf()');
    const passwords: string[] = [];
    const errors: unknown[] = [];
    try {
      const creds: { cred: IssuedCredential; ref: Parameters<TargetDriver['revoke']>[0] }[] = [];
      for (const grant of [READ, WRITE]) {
        const r = await issue(grant);
        passwords.push(r.cred.secret.password ?? '');
        creds.push(r);
      }
      // Errors on paths that handled a password: a failed re-issue, a wrong-group issue, a bad verify.
      const l = lease();
      const odd = new PostgresDriver('orders-db', parsePostgresSettings(db().settings), { read: { groupRole: 'missing_group' } });
      errors.push(await odd.issue({ lease: l, grant: READ, externalId: odd.externalId(l.taskId, READ) }).catch((e: unknown) => e));
      await odd.close();
      const down = new PostgresDriver(
        'orders-db',
        parsePostgresSettings({ ...db().settings, port: 1, connectTimeoutMs: 500 }),
        db().access,
      );
      errors.push(await down.issue({ lease: l, grant: READ, externalId: down.externalId(l.taskId, READ) }).catch((e: unknown) => e));
      errors.push(await down.revoke(creds[0]!.ref).catch((e: unknown) => e));
      // Unreachable: neither the login nor the session check can answer.
      const unreachable = { ...creds[0]!.cred.secret, port: '1' };
      expect(await down.verify({ ...creds[0]!.ref, secret: unreachable })).toBe('inconclusive');
      expect(await down.verify(creds[0]!.ref)).toBe('inconclusive');
      await down.close();
      for (const { cred, ref } of creds) {
        await driver.verify({ ...ref, secret: cred.secret });
        await driver.revoke(ref);
        await driver.verify({ ...ref, secret: cred.secret });
      }
    } finally {
      await adminQuery(db(), 'ALTER SYSTEM RESET log_statement');
      await adminQuery(db(), 'SELECT pg_reload_conf()');
      for (const s of spies) s.mockRestore();
    }
    expect(errors.every((e) => e instanceof TargetError)).toBe(true);
    const haystack = [
      ...captured,
      ...errors.map((e) => `${(e as Error).message} ${(e as Error).stack} ${JSON.stringify(e)}`),
      ...db().recentLogs(),
    ].join('\n');
    // log_statement=all was on: the server did log statements, just not ours with a password.
    expect(
      db()
        .recentLogs()
        .some((l) => l.includes('statement:')),
    ).toBe(true);
    expect(haystack).not.toMatch(/CREATE ROLE/i);
    for (const p of passwords) {
      expect(p.length).toBeGreaterThanOrEqual(43);
      expect(haystack).not.toContain(p);
    }
    expect(haystack).not.toContain(db().adminPassword);
  });
});
