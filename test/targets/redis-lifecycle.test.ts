import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provideLocalTargets } from '../../local/targets.ts';
import type { LocalTargets } from '../../local/targets.ts';
import { LeaseLifecycle } from '../../shared/lease/lifecycle.ts';
import { createReaperState, runReaper } from '../../shared/lease/reaper.ts';
import { reconcile } from '../../shared/lease/reconcile.ts';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import type { ClosableTargetRegistry } from '../../shared/policy/registry.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import type { EmbeddedRedis } from '../../shared/targets/redis/embedded.ts';
import { redisKind } from '../../shared/targets/redis/index.ts';
import { embeddedRedisOf } from '../../shared/targets/redis/local.ts';
import { createFakePorts } from '../support/fakes.ts';
import type { FakePorts } from '../support/fakes.ts';
import { clientCount, connectWith, ownerCall, REDIS_AVAILABLE, refusal, userExists } from '../support/redis.ts';
import { configWith } from './config-with.ts';

/*
 * The whole lifecycle through the broker's core with the redis kind in the kinds list (the
 * registry line is the lead's): the local runtime's provisioning starts Redis through the kind's
 * local.ts, the registry builds its driver, and the core issues, revokes and proves.
 */
const KINDS = [...TARGET_KINDS, redisKind];
const ADMIN_REF = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis-admin-AbCdEf';
const TARGET = 'orders-cache';
const grants = (access: string) => ({ grants: [{ target: TARGET, access }] });

let provided: LocalTargets;
let registry: ClosableTargetRegistry;
let f: FakePorts;
let core: LeaseLifecycle;
let server: EmbeddedRedis;
const passwords: string[] = [];

async function secretOf(taskId: string, access = 'read'): Promise<Record<string, string>> {
  const s = await f.secrets.get(`tasklease/${taskId}/${TARGET}.${access}`);
  if (!s) throw new Error(`no secret delivered for ${taskId}`);
  passwords.push(s.password!);
  return s;
}

describe.skipIf(!REDIS_AVAILABLE)('lease lifecycle on a redis target', () => {
  beforeAll(async () => {
    const config = configWith({
      [TARGET]: {
        kind: 'redis',
        // Placeholders: local.ts points them at the server it starts.
        settings: { host: 'redis.internal', user: 'placeholder', passwordSecret: ADMIN_REF, tls: true },
        access: {
          read: { keys: ['%R~orders:*'], commands: ['+@read', '+@connection'] },
          write: { keys: ['~orders:*'], channels: ['&orders:*'], commands: ['+@read', '+@write', '+@connection'] },
        },
        maxConcurrency: 3,
      },
    });
    provided = await provideLocalTargets(config, KINDS, { busConcurrency: 8 });
    server = embeddedRedisOf(provided.provisions[TARGET]);
    registry = buildTargetRegistry(provided.config, KINDS, { resolveSecret: (ref) => provided.resolveSecret(ref) });
    f = createFakePorts({ now: Date.now() });
    core = new LeaseLifecycle({ ...f.deps({ lockMs: 60_000, verifyDeadlineMs: 3_000 }), targets: registry });
  }, 60_000);
  afterAll(async () => {
    await registry?.close();
    await provided?.stop();
  });

  it('the local runtime provides the target: a Redis with an aclfile, the admin behind a reference, jobs within maxConcurrency', async () => {
    expect(provided.provisions[TARGET]?.describe).toMatch(/^Redis on 127\.0\.0\.1:\d+$/);
    const settings = provided.config.targets[TARGET]?.settings as Record<string, unknown>;
    expect(settings).toMatchObject({ host: '127.0.0.1', port: server.port, user: server.adminUser, adminConcurrency: 3, tls: false });
    expect(settings.password).toBeUndefined();
    expect(JSON.stringify(provided.config)).not.toContain(server.adminPassword);
    expect(await provided.resolveSecret(settings.passwordSecret as string)).toBe(server.adminPassword);
    expect(registry.entries()).toMatchObject([{ name: TARGET, kind: 'redis', maxConcurrency: 3 }]);
    expect(server.aclFile).toBeDefined();
  });

  it('issues, the connection opened during the task is killed at its end, the credential is proven rejected; its keys stay', async () => {
    const started = await core.taskStarted(f.started('rd-1', grants('write')));
    expect(started.status).toBe('issued');
    const secret = await secretOf('rd-1', 'write');
    const live = await connectWith(secret);
    await live.call('SET', 'orders:from-rd-1', 'kept');

    const ended = await core.taskEnded(f.ended('rd-1'));
    expect(ended.status).toBe('closed');
    expect(await refusal(live.call('GET', 'orders:from-rd-1'))).toBe('closed');
    live.disconnect();
    expect(await refusal(connectWith(secret))).toBe('WRONGPASS');
    expect(await clientCount(server, secret.username!)).toBe(0);
    expect(await ownerCall(server, 'GET', 'orders:from-rd-1')).toBe('kept');

    const cred = await f.ledger.credential('rd-1');
    expect(cred).toMatchObject({ state: 'verified', kind: 'redis', target: TARGET, externalId: secret.username });
    expect(cred.trustDebtMs).toBe((cred.verifiedAt as number) - (cred.endedAt as number));
    expect(await f.secrets.exists(`tasklease/rd-1/${TARGET}.write`)).toBe(false);
    expect(f.events.ofType('leaseRevoked').map((e) => (e as { taskId: string }).taskId)).toContain('rd-1');
  });

  it('duplicate and reordered events: a second start and end change nothing; an end before its start leaves no user', async () => {
    expect((await core.taskStarted(f.started('rd-2', grants('read')))).status).toBe('issued');
    await secretOf('rd-2');
    expect((await core.taskStarted(f.started('rd-2', grants('read')))).status).toBe('duplicate');
    expect((await core.taskEnded(f.ended('rd-2'))).status).toBe('closed');
    expect((await core.taskEnded(f.ended('rd-2'))).status).toBe('duplicate');

    expect((await core.taskEnded(f.ended('rd-3'))).status).toBe('tombstoned');
    expect((await core.taskStarted(f.started('rd-3', grants('read')))).status).not.toBe('issued');
    expect(await registry.get(TARGET)?.listManaged?.()).toEqual([]);
  });

  it('target down during the revoke: open debt, then the reaper completes it once the server is back', async () => {
    expect((await core.taskStarted(f.started('rd-4', grants('read')))).status).toBe('issued');
    const secret = await secretOf('rd-4');
    await server.stopServer();
    try {
      expect((await core.taskEnded(f.ended('rd-4'))).status).toBe('open-debt');
      const pending = await f.ledger.credential('rd-4');
      expect(pending.state).not.toBe('verified');
      expect(JSON.stringify(pending)).not.toContain(secret.password);
    } finally {
      await server.startServer();
    }
    // The user was saved to the aclfile at issue: it survived the restart and works until the reaper's revoke.
    (await connectWith(secret)).disconnect();
    const cred = await f.ledger.credential('rd-4');
    f.clock.set(Math.max(f.clock.now(), cred.nextCheckAt as number) + 61_000);
    const run = await runReaper(
      core,
      { ledger: f.ledger, clock: f.clock, log: f.log, targets: registry, state: createReaperState() },
      { reconcileEveryRuns: 0, intentStaleMs: 300_000, verifyDeadlineMs: 3_000 },
    );
    expect(run.resumedEnding).toBe(1);
    expect(await f.ledger.lease('rd-4')).toMatchObject({ state: 'closed' });
    const done = await f.ledger.credential('rd-4');
    expect(done.state).toBe('verified');
    // Trust debt is honest: it runs from the end to the reaper's proof, outage included.
    expect(done.trustDebtMs).toBe((done.verifiedAt as number) - (done.endedAt as number));
    expect(done.trustDebtMs).toBeGreaterThan(60_000);
    expect(await refusal(connectWith(secret))).toBe('WRONGPASS');
  });

  it("reconciliation finds an orphan made behind the broker's back, revokes it and proves it", async () => {
    const driver = registry.get(TARGET)!;
    const orphan = driver.externalId('never-started', { target: TARGET, access: 'write' });
    await ownerCall(server, 'ACL', 'SETUSER', orphan, 'on', '>made-by-hand', '~*', '+@all');
    const report = await reconcile({ ledger: f.ledger, targets: registry, clock: f.clock, log: f.log }, { graceMs: 0 });
    expect(report.orphans).toEqual([{ target: TARGET, externalId: orphan, action: 'revoked', verify: 'rejected' }]);
    expect(await userExists(server, orphan)).toBe(false);
  });

  it('no password in the ledger, the events or the logs', async () => {
    expect(passwords.length).toBeGreaterThanOrEqual(3);
    const everything = JSON.stringify({
      leases: await Promise.all(['rd-1', 'rd-2', 'rd-3', 'rd-4'].map((t) => f.ledger.getLease(t))),
      events: f.events.events,
      logs: f.log.lines,
      server: server.recentLogs(),
    });
    for (const pw of passwords) expect(everything).not.toContain(pw);
    expect(everything).not.toContain(server.adminPassword);
  });
});
