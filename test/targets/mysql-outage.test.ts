import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../shared/events/schemas.ts';
import { TargetError } from '../../shared/lease/errors.ts';
import { MysqlDriver } from '../../shared/targets/mysql/driver.ts';
import { parseMysqlSettings } from '../../shared/targets/mysql/settings.ts';
import { connectWith, errnoOf, MARIADB_AVAILABLE, sessionCount, useEmbeddedMariadb } from '../support/mariadb.ts';

const db = useEmbeddedMariadb();
let driver: MysqlDriver;
const READ: Grant = { target: 'orders-db', access: 'read' };

describe.skipIf(!MARIADB_AVAILABLE)('mysql target: the server goes away during a revoke', () => {
  beforeAll(() => {
    driver = new MysqlDriver('orders-db', parseMysqlSettings({ ...db().settings, connectTimeoutMs: 1_000 }), db().access);
  });
  afterAll(async () => {
    await driver?.close();
  });

  it('down: verify inconclusive, revoke fails retryably without the password; back: the revoke completes and is proven', async () => {
    const taskId = `task-${randomUUID()}`;
    const externalId = driver.externalId(taskId, READ);
    const cred = await driver.issue({
      lease: { taskId, workload: 'w', expiresAt: Date.now() + 600_000, durationSeconds: 600 },
      grant: READ,
      externalId,
    });
    const ref = { taskId, grant: READ, externalId, metadata: cred.metadata };
    // Warm the admin pool: its idle connections die with the server and must not be reused.
    expect(await driver.verify(ref)).toBe('still-valid');

    await db().stopServer();
    expect(db().isRunning()).toBe(false);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('inconclusive');
    expect(await driver.verify(ref)).toBe('inconclusive');
    const err = await driver.revoke(ref).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetError);
    expect((err as TargetError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/^mysql revoke failed/);
    expect((err as Error).message).not.toContain(cred.secret.password);

    await db().startServer();
    // The account survived the restart and works until revoked: a session the task opens now too.
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('still-valid');
    const late = await connectWith(cred.secret);
    await driver.revoke(ref);
    expect(await errnoOf(late.query('SELECT 1'))).not.toBeUndefined();
    late.destroy();
    expect(await sessionCount(db(), externalId)).toBe(0);
    expect(await driver.verify({ ...ref, secret: cred.secret })).toBe('rejected');
    await expect.poll(() => driver.listManaged(), { timeout: 2_000 }).toEqual([]);
  });
});
