import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provideLocalTargets } from '../../local/targets.ts';
import type { LocalTargets } from '../../local/targets.ts';
import { LeaseLifecycle } from '../../shared/lease/lifecycle.ts';
import { createReaperState, runReaper } from '../../shared/lease/reaper.ts';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import type { ClosableTargetRegistry } from '../../shared/policy/registry.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import type { EmbeddedRabbitmq } from '../../shared/targets/rabbitmq/embedded.ts';
import { rabbitmqKind } from '../../shared/targets/rabbitmq/index.ts';
import { embeddedRabbitmqOf } from '../../shared/targets/rabbitmq/local.ts';
import { createFakePorts } from '../support/fakes.ts';
import type { FakePorts } from '../support/fakes.ts';
import { closed, connectionsOf, connectWith, failureOf, onChannel, RABBITMQ_AVAILABLE, tcpProxy, userExists } from '../support/rabbitmq.ts';
import type { TcpProxy } from '../support/rabbitmq.ts';
import { configWith } from './config-with.ts';

/*
 * The whole lifecycle through the broker's core with the rabbitmq kind in the kinds list (the
 * registry line is the lead's): the local runtime's provisioning starts RabbitMQ through the
 * kind's local.ts, the registry builds its driver, and the core issues, revokes and proves. The
 * driver reaches the management API through a proxy the test can take down.
 */
const KINDS = [...TARGET_KINDS, rabbitmqKind];
const ADMIN_REF = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:rabbit-admin-AbCdEf';
const TARGET = 'orders-db';

let provided: LocalTargets;
let registry: ClosableTargetRegistry;
let proxy: TcpProxy;
let f: FakePorts;
let core: LeaseLifecycle;
let server: EmbeddedRabbitmq;
const passwords: string[] = [];

async function secretOf(taskId: string, access = 'read'): Promise<Record<string, string>> {
  const s = await f.secrets.get(`tasklease/${taskId}/${TARGET}.${access}`);
  if (!s) throw new Error(`no secret delivered for ${taskId}`);
  passwords.push(s.password!);
  return s;
}

describe.skipIf(!RABBITMQ_AVAILABLE)('lease lifecycle on a rabbitmq target', () => {
  beforeAll(async () => {
    const config = configWith({
      [TARGET]: {
        kind: 'rabbitmq',
        // Placeholders: local.ts points them at the broker it starts.
        settings: {
          managementUrl: 'https://rabbit.internal/',
          amqpUrl: 'amqps://rabbit.internal',
          adminUser: 'x',
          adminPasswordSecret: ADMIN_REF,
        },
        access: {
          read: { vhosts: { events: { configure: '', write: '', read: '^events\\.' } } },
          write: { vhosts: { events: { configure: '^events\\.', write: '^(events\\..*|amq\\.default)$', read: '^events\\.' } } },
        },
        maxConcurrency: 3,
      },
    });
    provided = await provideLocalTargets(config, KINDS, { busConcurrency: 8 });
    server = embeddedRabbitmqOf(provided.provisions[TARGET]);
    proxy = await tcpProxy(server.managementPort);
    const t = provided.config.targets[TARGET]!;
    const viaProxy = {
      ...provided.config,
      targets: { [TARGET]: { ...t, settings: { ...(t.settings as object), managementUrl: proxy.url } } },
    };
    registry = buildTargetRegistry(viaProxy, KINDS, { resolveSecret: (ref) => provided.resolveSecret(ref) });
    f = createFakePorts({ now: Date.now() });
    core = new LeaseLifecycle({ ...f.deps({ lockMs: 60_000, verifyDeadlineMs: 3_000 }), targets: registry });
  }, 120_000);
  afterAll(async () => {
    await registry?.close();
    await proxy?.close();
    await provided?.stop();
  }, 30_000);

  it('the local runtime provides the target: a broker with the levels’ vhost, the admin behind a reference, within maxConcurrency', async () => {
    expect(provided.provisions[TARGET]?.describe).toMatch(/^RabbitMQ on 127\.0\.0\.1:\d+ \(management \d+\)$/);
    const settings = provided.config.targets[TARGET]?.settings as Record<string, unknown>;
    expect(settings).toMatchObject({
      amqpUrl: server.amqpUrl,
      managementUrl: server.managementUrl,
      adminUser: server.adminUser,
      adminConcurrency: 3,
    });
    expect(settings.adminPassword).toBeUndefined();
    expect(JSON.stringify(provided.config)).not.toContain(server.adminPassword);
    expect(await provided.resolveSecret(settings.adminPasswordSecret as string)).toBe(server.adminPassword);
    expect((await server.api('GET', '/api/vhosts/events')).status).toBe(200);
    expect(registry.entries()).toMatchObject([{ name: TARGET, kind: 'rabbitmq', maxConcurrency: 3 }]);
  });

  it('issues; the connection opened during the task is closed at its end; the credential is proven rejected', async () => {
    expect((await core.taskStarted(f.started('rq-1', { grants: [{ target: TARGET, access: 'write' }] }))).status).toBe('issued');
    const secret = await secretOf('rq-1', 'write');
    const live = await connectWith(secret);
    const ended = closed(live);
    expect(await onChannel(live, (ch) => ch.assertQueue('events.rq-1', { durable: true }))).toBeUndefined();

    expect((await core.taskEnded(f.ended('rq-1'))).status).toBe('closed');
    expect(await ended).toMatch(/CONNECTION[-_]FORCED|320/);
    expect(await failureOf(connectWith(secret))).toMatch(/ACCESS-REFUSED/);
    expect(await connectionsOf(server, secret.username!)).toEqual([]);
    // What the task declared stays, ownerless, for the level's next user.
    expect((await server.api('GET', '/api/queues/events/events.rq-1')).status).toBe(200);

    const cred = await f.ledger.credential('rq-1');
    expect(cred).toMatchObject({ state: 'verified', kind: 'rabbitmq', target: TARGET, externalId: secret.username });
    expect(cred.trustDebtMs).toBe((cred.verifiedAt as number) - (cred.endedAt as number));
    expect(await f.secrets.exists(`tasklease/rq-1/${TARGET}.write`)).toBe(false);
    expect(f.events.ofType('leaseRevoked').map((e) => e.taskId)).toContain('rq-1');
  });

  it('duplicate and reordered events: a second start and end change nothing; an end before its start leaves no user', async () => {
    expect((await core.taskStarted(f.started('rq-2', { grants: [{ target: TARGET, access: 'read' }] }))).status).toBe('issued');
    const secret = await secretOf('rq-2');
    expect((await core.taskStarted(f.started('rq-2', { grants: [{ target: TARGET, access: 'read' }] }))).status).toBe('duplicate');
    expect((await core.taskEnded(f.ended('rq-2'))).status).toBe('closed');
    expect((await core.taskEnded(f.ended('rq-2'))).status).toBe('duplicate');
    expect(await userExists(server, secret.username!)).toBe(false);

    expect((await core.taskEnded(f.ended('rq-3'))).status).toBe('tombstoned');
    expect((await core.taskStarted(f.started('rq-3', { grants: [{ target: TARGET, access: 'read' }] }))).status).not.toBe('issued');
    expect(await registry.get(TARGET)?.listManaged?.()).toEqual([]);
  });

  it('management API down during the revoke: open debt and a working credential; back: the reaper completes it', async () => {
    expect((await core.taskStarted(f.started('rq-4', { grants: [{ target: TARGET, access: 'write' }] }))).status).toBe('issued');
    const secret = await secretOf('rq-4', 'write');
    const live = await connectWith(secret);
    const ended = closed(live);
    await proxy.down();
    try {
      expect((await core.taskEnded(f.ended('rq-4'))).status).toBe('open-debt');
      const pending = await f.ledger.credential('rq-4');
      expect(pending.state).not.toBe('verified');
      expect(JSON.stringify(pending)).not.toContain(secret.password);
    } finally {
      await proxy.up();
    }
    // Honest: until the reaper's revoke the user exists and its connection still works.
    expect(await onChannel(live, (ch) => ch.checkQueue('events.rq-1'))).toBeUndefined();
    const cred = await f.ledger.credential('rq-4');
    f.clock.set(Math.max(f.clock.now(), cred.nextCheckAt as number) + 61_000);
    const run = await runReaper(
      core,
      { ledger: f.ledger, clock: f.clock, log: f.log, targets: registry, state: createReaperState() },
      { reconcileEveryRuns: 0, intentStaleMs: 300_000, verifyDeadlineMs: 3_000 },
    );
    expect(run.resumedEnding).toBe(1);
    expect(await ended).toMatch(/CONNECTION[-_]FORCED|320/);
    expect(await f.ledger.lease('rq-4')).toMatchObject({ state: 'closed' });
    const done = await f.ledger.credential('rq-4');
    expect(done.state).toBe('verified');
    // Trust debt runs from the end to the reaper's proof, outage included.
    expect(done.trustDebtMs).toBe((done.verifiedAt as number) - (done.endedAt as number));
    expect(done.trustDebtMs).toBeGreaterThan(60_000);
    expect(await failureOf(connectWith(secret))).toMatch(/ACCESS-REFUSED/);
  });

  it('no password in the ledger, the events, the logs or the broker log', async () => {
    expect(passwords.length).toBeGreaterThanOrEqual(3);
    const everything = JSON.stringify({
      leases: await Promise.all(['rq-1', 'rq-2', 'rq-3', 'rq-4'].map((t) => f.ledger.getLease(t))),
      events: f.events.events,
      logs: f.log.lines,
    });
    const brokerLog = await server.readLog();
    for (const pw of passwords) {
      expect(everything).not.toContain(pw);
      expect(brokerLog).not.toContain(pw);
    }
    expect(everything).not.toContain(server.adminPassword);
    expect(brokerLog).not.toContain(server.adminPassword);
  });
});
