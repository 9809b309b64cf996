import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../shared/events/schemas.ts';
import { PostgresDriver } from '../../shared/targets/postgres/driver.ts';
import { parsePostgresSettings } from '../../shared/targets/postgres/settings.ts';
import { adminQuery, useEmbeddedPostgres } from '../support/postgres.ts';

/**
 * The blind spot of issue 13, as a deterministic interleaving: a login that passes the password
 * check before the drop and appears after it. post_auth_delay (settable by any client in its
 * startup packet) holds the backend between the login check and its pg_stat_activity row, which
 * shows it 'starting' with no role until it appears, by then with usename NULL (role dropped).
 */
const db = useEmbeddedPostgres();
let driver: PostgresDriver;
const READ: Grant = { target: 'orders-db', access: 'read' };

beforeAll(() => {
  driver = new PostgresDriver('orders-db', parsePostgresSettings({ ...db().settings, sessionDrainTimeoutMs: 200 }), db().access);
});
afterAll(async () => {
  await driver?.close();
});

function lateLogin(secret: Record<string, string>, delaySeconds: number): { client: pg.Client; connected: Promise<void> } {
  const client = new pg.Client({
    host: secret.host,
    port: Number(secret.port),
    database: secret.database,
    user: secret.username,
    password: secret.password,
    options: `-c post_auth_delay=${delaySeconds}`,
  });
  client.on('error', () => undefined);
  return { client, connected: client.connect().then(() => undefined) };
}

describe('a session that races the drop', () => {
  for (const recorded of [true, false]) {
    it(`is never proven gone while it can still appear, and is seen by oid once it has (${recorded ? 'oid recorded' : 'intent: no oid recorded'})`, async () => {
      const taskId = `task-${randomUUID()}`;
      const externalId = driver.externalId(taskId, READ);
      const cred = await driver.issue({
        lease: { taskId, workload: 'w', expiresAt: Date.now() + 600_000, durationSeconds: 600 },
        grant: READ,
        externalId,
      });
      const ref = { taskId, grant: READ, externalId, ...(recorded ? { metadata: cred.metadata } : {}) };
      const late = lateLogin(cred.secret, 2);
      // Wait until the login is past its password check (a 'starting' backend).
      for (;;) {
        const rows = await adminQuery(db(), "SELECT 1 FROM pg_stat_activity WHERE state = 'starting' AND backend_type = 'client backend'");
        if (rows.length) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 200));
      // The revoke drops the role; the login still starting makes it fail (retryably) rather than claim done.
      await expect(driver.revoke(ref)).rejects.toThrow(/still open/);
      expect((await adminQuery(db(), 'SELECT 1 FROM pg_roles WHERE rolname = $1', [externalId])).length).toBe(0);
      // While it is starting, nothing may be proven.
      expect(await driver.verify({ ...ref, secret: cred.secret })).not.toBe('rejected');
      await late.connected;
      // It is a session of the dropped role (usename NULL): verify finds it by oid.
      const oid = cred.metadata?.roleOid;
      const seen = await adminQuery<{ usename: string | null }>(db(), 'SELECT usename FROM pg_stat_activity WHERE usesysid = $1::oid', [
        oid,
      ]);
      expect(seen).toEqual([{ usename: null }]);
      expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('still-valid');
      // The next revoke ends it, and only then is it proven.
      await driver.revoke(ref);
      await expect(late.client.query('SELECT 1')).rejects.toThrow();
      await late.client.end().catch(() => undefined);
      expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
    });
  }
});
