import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provideLocalTargets } from '../../local/targets.ts';
import type { LocalTargets } from '../../local/targets.ts';
import { LeaseLifecycle } from '../../shared/lease/lifecycle.ts';
import { createReaperState, runReaper } from '../../shared/lease/reaper.ts';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import type { ClosableTargetRegistry } from '../../shared/policy/registry.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import { mysqlKind } from '../../shared/targets/mysql/index.ts';
import { embeddedMariadbOf } from '../../shared/targets/mysql/local.ts';
import type { EmbeddedMariadb } from '../../shared/targets/mysql/embedded.ts';
import { createFakePorts } from '../support/fakes.ts';
import type { FakePorts } from '../support/fakes.ts';
import { connectWith, errnoOf, MARIADB_AVAILABLE, sessionCount } from '../support/mariadb.ts';
import { configWith } from './config-with.ts';

/*
 * The whole lifecycle through the broker's core with the mysql kind in the kinds list (the
 * registry line is the lead's): the local runtime's provisioning starts MariaDB through the
 * kind's local.ts, the registry builds its driver, and the core issues, revokes and proves.
 */
const KINDS = [...TARGET_KINDS, mysqlKind];
const ADMIN_REF = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:mysql-admin-AbCdEf';

let provided: LocalTargets;
let registry: ClosableTargetRegistry;
let f: FakePorts;
let core: LeaseLifecycle;
let server: EmbeddedMariadb;
const passwords: string[] = [];

async function secretOf(taskId: string, access = 'read'): Promise<Record<string, string>> {
  const s = await f.secrets.get(`tasklease/${taskId}/orders-db.${access}`);
  if (!s) throw new Error(`no secret delivered for ${taskId}`);
  passwords.push(s.password!);
  return s;
}

describe.skipIf(!MARIADB_AVAILABLE)('lease lifecycle on a mysql target (MariaDB)', () => {
  beforeAll(async () => {
    const config = configWith({
      'orders-db': {
        kind: 'mysql',
        // Placeholders: local.ts points them at the server it starts.
        settings: { host: 'mysql.internal', user: 'placeholder', passwordSecret: ADMIN_REF },
        access: { read: { grants: [{ privileges: ['SELECT'], on: 'orders.*' }] }, write: { role: 'orders_write' } },
        maxConcurrency: 3,
      },
    });
    provided = await provideLocalTargets(config, KINDS, { busConcurrency: 8 });
    server = embeddedMariadbOf(provided.provisions['orders-db']);
    registry = buildTargetRegistry(provided.config, KINDS, { resolveSecret: (ref) => provided.resolveSecret(ref) });
    f = createFakePorts({ now: Date.now() });
    core = new LeaseLifecycle({ ...f.deps({ lockMs: 60_000, verifyDeadlineMs: 3_000 }), targets: registry });
  }, 90_000);
  afterAll(async () => {
    await registry?.close();
    await provided?.stop();
  });

  it('the local runtime provides the target: a MariaDB, the admin behind a reference, the pool within maxConcurrency', async () => {
    expect(provided.provisions['orders-db']?.describe).toMatch(/^MariaDB on 127\.0\.0\.1:\d+$/);
    const settings = provided.config.targets['orders-db']?.settings as Record<string, unknown>;
    expect(settings).toMatchObject({ host: '127.0.0.1', port: server.port, user: server.adminUser, adminPoolMax: 3 });
    expect(settings.password).toBeUndefined();
    expect(JSON.stringify(provided.config)).not.toContain(server.adminPassword);
    expect(await provided.resolveSecret(settings.passwordSecret as string)).toBe(server.adminPassword);
    expect(registry.entries()).toMatchObject([{ name: 'orders-db', kind: 'mysql', maxConcurrency: 3 }]);
  });

  it('issues, the session opened during the task is killed at its end, the credential is proven rejected', async () => {
    const started = await core.taskStarted(f.started('my-1', { grants: [{ target: 'orders-db', access: 'write' }] }));
    expect(started.status).toBe('issued');
    const secret = await secretOf('my-1', 'write');
    const live = await connectWith(secret);
    await live.query("INSERT INTO orders.orders (item, qty) VALUES ('from-my-1', 1)");

    const ended = await core.taskEnded(f.ended('my-1'));
    expect(ended.status).toBe('closed');
    expect(await errnoOf(live.query('SELECT 1'))).not.toBeUndefined();
    live.destroy();
    expect([1045, 1698]).toContain(await errnoOf(connectWith(secret)));
    expect(await sessionCount(server, secret.username!)).toBe(0);

    const cred = await f.ledger.credential('my-1');
    expect(cred).toMatchObject({ state: 'verified', kind: 'mysql', target: 'orders-db', externalId: secret.username });
    expect(cred.trustDebtMs).toBe((cred.verifiedAt as number) - (cred.endedAt as number));
    expect(await f.secrets.exists('tasklease/my-1/orders-db.write')).toBe(false);
    expect(f.events.ofType('leaseRevoked').map((e) => e.taskId)).toContain('my-1');
  });

  it('duplicate and reordered events: a second start and end change nothing; an end before its start leaves no account', async () => {
    expect((await core.taskStarted(f.started('my-2'))).status).toBe('issued');
    await secretOf('my-2');
    expect((await core.taskStarted(f.started('my-2'))).status).toBe('duplicate');
    expect((await core.taskEnded(f.ended('my-2'))).status).toBe('closed');
    expect((await core.taskEnded(f.ended('my-2'))).status).toBe('duplicate');

    expect((await core.taskEnded(f.ended('my-3'))).status).toBe('tombstoned');
    expect((await core.taskStarted(f.started('my-3'))).status).not.toBe('issued');
    await expect.poll(() => registry.get('orders-db')?.listManaged?.(), { timeout: 2_000 }).toEqual([]);
  });

  it('target down during the revoke: open debt, then the reaper completes it once the server is back', async () => {
    expect((await core.taskStarted(f.started('my-4'))).status).toBe('issued');
    const secret = await secretOf('my-4');
    await server.stopServer();
    try {
      expect((await core.taskEnded(f.ended('my-4'))).status).toBe('open-debt');
      const pending = await f.ledger.credential('my-4');
      expect(pending.state).not.toBe('verified');
      expect(JSON.stringify(pending)).not.toContain(secret.password);
    } finally {
      await server.startServer();
    }
    // The account survived the outage: until the reaper's revoke, the password still works.
    (await connectWith(secret)).destroy();
    const cred = await f.ledger.credential('my-4');
    f.clock.set(Math.max(f.clock.now(), cred.nextCheckAt as number) + 61_000);
    const run = await runReaper(
      core,
      { ledger: f.ledger, clock: f.clock, log: f.log, targets: registry, state: createReaperState() },
      { reconcileEveryRuns: 0, intentStaleMs: 300_000, verifyDeadlineMs: 3_000 },
    );
    expect(run.resumedEnding).toBe(1);
    expect(await f.ledger.lease('my-4')).toMatchObject({ state: 'closed' });
    const done = await f.ledger.credential('my-4');
    expect(done.state).toBe('verified');
    // Trust debt is honest: it runs from the end to the reaper's proof, outage included.
    expect(done.trustDebtMs).toBe((done.verifiedAt as number) - (done.endedAt as number));
    expect(done.trustDebtMs).toBeGreaterThan(60_000);
    expect([1045, 1698]).toContain(await errnoOf(connectWith(secret)));
  });

  it('no password in the ledger, the events or the logs', async () => {
    expect(passwords.length).toBeGreaterThanOrEqual(3);
    const everything = JSON.stringify({
      leases: await Promise.all(['my-1', 'my-2', 'my-3', 'my-4'].map((t) => f.ledger.getLease(t))),
      events: f.events.events,
      logs: f.log.lines,
    });
    for (const pw of passwords) expect(everything).not.toContain(pw);
    expect(everything).not.toContain(server.adminPassword);
  });
});
