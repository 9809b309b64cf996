import { createHash, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Grant } from '../../shared/events/schemas.ts';
import { TargetError } from '../../shared/lease/errors.ts';
import type { IssuedCredential, LeaseContext } from '../../shared/lease/ports.ts';
import { parseRedisSettings, RedisDriver, redisDriverFactory } from '../../shared/targets/redis/driver.ts';
import type { RedisAccess } from '../../shared/targets/redis/driver.ts';
import { startEmbeddedRedis } from '../../shared/targets/redis/embedded.ts';
import {
  clientCount,
  connectWith,
  ownerCall,
  ownerConnection,
  REDIS_AVAILABLE,
  refusal,
  useEmbeddedRedis,
  userExists,
} from '../support/redis.ts';

const server = useEmbeddedRedis();
let driver: RedisDriver;

const READ: Grant = { target: 'orders-cache', access: 'read' };
const WRITE: Grant = { target: 'orders-cache', access: 'write' };

function lease(taskId = `task-${randomUUID()}`, ttlMs = 10 * 60_000): LeaseContext {
  return { taskId, workload: 'spiffe://demo.local/worker', expiresAt: Date.now() + ttlMs, durationSeconds: ttlMs / 1000 };
}

async function issue(grant: Grant, l = lease(), d: RedisDriver = driver) {
  const externalId = d.externalId(l.taskId, grant);
  const cred: IssuedCredential = await d.issue({ lease: l, grant, externalId });
  const ref = { taskId: l.taskId, grant, externalId, metadata: cred.metadata, naturalExpiry: cred.naturalExpiry };
  return { lease: l, externalId, cred, ref, withSecret: { ...ref, secret: cred.secret } };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const out = await fn();
  return [out, Math.round((performance.now() - t0) * 10) / 10];
}

const timings: Record<'revoke' | 'verify', number[]> = { revoke: [], verify: [] };
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe.skipIf(!REDIS_AVAILABLE)('redis target on a real Redis 7', () => {
  beforeAll(() => {
    driver = redisDriverFactory.create(
      { name: 'orders-cache', settings: parseRedisSettings(server().settings), access: server().access },
      {},
    ) as RedisDriver;
  });
  afterAll(async () => {
    await driver?.close();
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.info(
      `redis revoke ms: median ${med(timings.revoke)} max ${Math.max(...timings.revoke)} (n=${timings.revoke.length}); ` +
        `verify ms: median ${med(timings.verify)} max ${Math.max(...timings.verify)} (n=${timings.verify.length})`,
    );
  });

  describe('issue', () => {
    it('read: AUTH works, reads its keys; writes, other keys, KEYS and ACL are refused with NOPERM', async () => {
      const { cred, ref } = await issue(READ);
      expect(Object.keys(cred.secret).sort()).toEqual(['host', 'password', 'port', 'tls', 'username']);
      expect(cred.secret.username).toBe(ref.externalId);
      expect(ref.externalId).toMatch(/^tl_[0-9a-f]{40}$/);
      expect(Buffer.from(cred.secret.password!, 'base64url').length).toBeGreaterThanOrEqual(32);
      // Redis has no ACL expiry: the lease's end is reported, and said to be the broker's.
      expect(ref.metadata).toEqual({ serverExpiry: 'none' });
      const c = await connectWith(cred.secret);
      try {
        expect(await c.call('HGET', 'orders:1', 'item')).toBe('apples');
        expect(await refusal(c.call('HSET', 'orders:1', 'qty', '0'))).toBe('NOPERM');
        expect(await refusal(c.call('GET', 'reports:total'))).toBe('NOPERM');
        expect(await refusal(c.call('KEYS', '*'))).toBe('NOPERM');
        expect(await refusal(c.call('ACL', 'SETUSER', 'evil', 'on', 'nopass', '+@all', '~*'))).toBe('NOPERM');
        expect(await refusal(c.call('CONFIG', 'SET', 'aclfile', '/tmp/x'))).toBe('NOPERM');
        expect(await refusal(c.call('PUBLISH', 'orders:events', 'x'))).toBe('NOPERM');
      } finally {
        c.disconnect();
      }
      await driver.revoke(ref);
    });

    it('write: writes and publishes on its patterns; other keys and channels, FLUSHALL and CLIENT KILL are refused', async () => {
      const { cred, ref } = await issue(WRITE);
      const c = await connectWith(cred.secret);
      try {
        expect(await c.call('SET', 'orders:w1', 'x')).toBe('OK');
        expect(await c.call('DEL', 'orders:w1')).toBe(1);
        expect(await c.call('PUBLISH', 'orders:events', 'hello')).toBe(0);
        expect(await refusal(c.call('PUBLISH', 'reports:events', 'x'))).toBe('NOPERM');
        expect(await refusal(c.call('SET', 'reports:total', '0'))).toBe('NOPERM');
        // The closing -@admin -@dangerous, whatever +@write brought in.
        expect(await refusal(c.call('FLUSHALL'))).toBe('NOPERM');
        expect(await refusal(c.call('CLIENT', 'KILL', 'USER', 'owner'))).toBe('NOPERM');
        expect(await refusal(c.call('CLIENT', 'LIST'))).toBe('NOPERM');
      } finally {
        c.disconnect();
      }
      await driver.revoke(ref);
    });

    it('the user as the server holds it: on, the password only as its SHA-256, the level rules, saved to the aclfile', async () => {
      const { cred, ref } = await issue(WRITE);
      const acl = (await ownerCall(server(), 'ACL', 'GETUSER', ref.externalId)) as unknown[];
      const field = (k: string) => acl[acl.indexOf(k) + 1];
      expect(field('flags')).toContain('on');
      expect(field('passwords')).toEqual([sha256(cred.secret.password!)]);
      expect(field('keys')).toBe('~orders:*');
      expect(field('channels')).toBe('&orders:*');
      expect(String(field('commands'))).toMatch(/^-@all /);
      const file = await readFile(server().aclFile!, 'utf8');
      const line = file.split('\n').find((l) => l.startsWith(`user ${ref.externalId} `));
      expect(line).toContain(` on `);
      expect(line).toContain(` #${sha256(cred.secret.password!)} `);
      expect(file).not.toContain(cred.secret.password);
      await driver.revoke(ref);
      expect(await readFile(server().aclFile!, 'utf8')).not.toContain(ref.externalId);
    });

    it('issuing the same credential again re-keys the user (crash retry): only the new password works', async () => {
      const l = lease();
      const first = await issue(READ, l);
      const second = await issue(READ, l);
      expect(second.externalId).toBe(first.externalId);
      expect(second.cred.secret.password).not.toBe(first.cred.secret.password);
      expect(await refusal(connectWith(first.cred.secret))).toBe('WRONGPASS');
      (await connectWith(second.cred.secret)).disconnect();
      await driver.revoke(second.ref);
      expect(await userExists(server(), first.externalId)).toBe(false);
    });

    it('an unknown access level, or a rule the server refuses, fails without retry, leaves no user and no secret in the error', async () => {
      const l = lease();
      const grant = { target: 'orders-cache', access: 'admin' };
      const err = await driver.issue({ lease: l, grant, externalId: driver.externalId(l.taskId, grant) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TargetError);
      expect((err as TargetError).retryable).toBe(false);
      // Past the schema (a level built in code): the server refuses the rule, the whole SETUSER with it.
      const odd = new RedisDriver('orders-cache', parseRedisSettings(server().settings), {
        read: { keys: ['~orders:*'], channels: [], commands: ['+@read', '+nosuchcommand'] } as RedisAccess,
      });
      try {
        const id = odd.externalId(l.taskId, READ);
        const e2 = (await odd.issue({ lease: l, grant: READ, externalId: id }).catch((e: unknown) => e)) as TargetError;
        expect(e2).toBeInstanceOf(TargetError);
        expect(e2.retryable).toBe(false);
        expect(e2.message).toMatch(/^redis issue failed \(ERR\): .*nosuchcommand/);
        expect(JSON.stringify({ ...e2, message: e2.message, stack: e2.stack })).not.toMatch(/[0-9a-f]{64}/);
        expect((e2 as { cause?: unknown }).cause).toBeUndefined();
        expect(await userExists(server(), id)).toBe(false);
      } finally {
        await odd.close();
      }
    });
  });

  describe('revoke and verify', () => {
    it('still-valid before; revoke kills the open connections (plain, subscribed, blocked); AUTH WRONGPASS; verify proves it', async () => {
      const { cred, ref, withSecret } = await issue(WRITE);
      expect(await driver.verify(withSecret)).toBe('still-valid');
      expect(await driver.verify(ref)).toBe('still-valid');
      expect(await clientCount(server(), ref.externalId)).toBe(0); // verify's login was closed

      const plain = await connectWith(cred.secret);
      await plain.call('SET', 'orders:live', '1');
      const subscriber = await connectWith(cred.secret);
      await subscriber.subscribe('orders:events');
      const blocked = await connectWith(cred.secret);
      const blpop = refusal(blocked.call('BLPOP', 'orders:queue', '30'));
      await new Promise((r) => setTimeout(r, 50));
      expect(await clientCount(server(), ref.externalId)).toBe(3);

      const [, revokeMs] = await timed(() => driver.revoke(ref));
      timings.revoke.push(revokeMs);
      expect(revokeMs).toBeLessThan(2_000);

      expect(await blpop).toBe('closed');
      expect(await refusal(plain.call('GET', 'orders:live'))).toBe('closed');
      // The server closed it: the client reaches 'end' once its socket's close event is handled,
      // which on a loaded machine may come a moment after the other two clients saw theirs.
      if (subscriber.status !== 'end') await new Promise((r) => subscriber.once('end', r));
      expect(subscriber.status).toBe('end');
      for (const c of [plain, subscriber, blocked]) c.disconnect();
      expect(await refusal(connectWith(cred.secret))).toBe('WRONGPASS');
      expect(await userExists(server(), ref.externalId)).toBe(false);
      expect(await clientCount(server(), ref.externalId)).toBe(0);
      const [verdict, verifyMs] = await timed(() => driver.verify(withSecret));
      timings.verify.push(verifyMs);
      expect(verdict).toBe('rejected');
      expect(await driver.verify(ref)).toBe('rejected');
    });

    it('a user disabled but not killed: AUTH is refused (WRONGPASS), the open client still works, so verify says still-valid', async () => {
      const { cred, ref, withSecret } = await issue(WRITE);
      const open = await connectWith(cred.secret);
      // Half a revocation by hand, what a broker without the kill does: no new login, no kill.
      await ownerCall(server(), 'ACL', 'SETUSER', ref.externalId, 'off', 'resetpass');
      expect(await refusal(connectWith(cred.secret))).toBe('WRONGPASS');
      // The connection authenticated before keeps its rights.
      expect(await open.call('SET', 'orders:after-off', '1')).toBe('OK');
      expect(await driver.verify(withSecret)).toBe('still-valid');
      expect(await driver.verify(ref)).toBe('still-valid');

      await driver.revoke(ref);
      expect(await refusal(open.call('GET', 'orders:after-off'))).toBe('closed');
      open.disconnect();
      expect(await driver.verify(withSecret)).toBe('rejected');
      await ownerCall(server(), 'DEL', 'orders:after-off');
    });

    it('without the password: a disabled leftover is inconclusive, a deleted user is rejected', async () => {
      const { ref } = await issue(READ);
      await ownerCall(server(), 'ACL', 'SETUSER', ref.externalId, 'off');
      expect(await driver.verify(ref)).toBe('inconclusive');
      await driver.revoke(ref);
      expect(await driver.verify(ref)).toBe('rejected');
    });

    it('many connections, all end with the revoke', async () => {
      const { cred, ref, withSecret } = await issue(READ);
      const conns = await Promise.all(Array.from({ length: 8 }, () => connectWith(cred.secret)));
      expect(await clientCount(server(), ref.externalId)).toBe(8);
      const [, ms] = await timed(() => driver.revoke(ref));
      timings.revoke.push(ms);
      for (const c of conns) {
        expect(await refusal(c.call('PING'))).toBe('closed');
        c.disconnect();
      }
      const [v, vms] = await timed(() => driver.verify(withSecret));
      timings.verify.push(vms);
      expect(v).toBe('rejected');
    });

    it('revoke is idempotent: twice, concurrently, and for a user never issued', async () => {
      const { ref, withSecret } = await issue(READ);
      await driver.revoke(ref);
      await driver.revoke(ref);
      const second = await issue(WRITE);
      const c = await connectWith(second.cred.secret);
      await Promise.all([driver.revoke(second.ref), driver.revoke(second.ref), driver.revoke(second.ref)]);
      c.disconnect();
      expect(await driver.verify(second.withSecret)).toBe('rejected');
      const l = lease();
      const never = { taskId: l.taskId, grant: READ, externalId: driver.externalId(l.taskId, READ) };
      await driver.revoke(never);
      expect(await driver.verify(never)).toBe('rejected');
      expect(await userExists(server(), never.externalId)).toBe(false);
      expect(await driver.verify(withSecret)).toBe('rejected');
    });

    it('refuses to revoke or verify a user that is not tasklease-managed', async () => {
      for (const externalId of [
        'tasklease_admin',
        'default',
        'owner',
        'tl_notahash',
        'tl_x on nopass +@all ~*',
        `tl_${'a'.repeat(40)}\n`,
      ]) {
        const err = await driver.revoke({ taskId: 't', grant: READ, externalId }).catch((e: unknown) => e);
        expect(err, externalId).toBeInstanceOf(TargetError);
        expect((err as TargetError).retryable).toBe(false);
        expect(await driver.verify({ taskId: 't', grant: READ, externalId }).catch((e: unknown) => e)).toBeInstanceOf(TargetError);
      }
      expect(await userExists(server(), 'tasklease_admin')).toBe(true);
      expect(await userExists(server(), 'owner')).toBe(true);
    });

    it('a revoke made durable: after a restart (the server reloads its aclfile) the user does not come back', async () => {
      const { cred, ref, withSecret } = await issue(READ);
      const kept = await issue(READ);
      await driver.revoke(ref);
      await server().stopServer();
      await server().startServer();
      expect(await userExists(server(), ref.externalId)).toBe(false);
      expect(await refusal(connectWith(cred.secret))).toBe('WRONGPASS');
      expect(await driver.verify(withSecret)).toBe('rejected');
      // What was issued and not revoked survives the restart: the aclfile is the server's truth.
      (await connectWith(kept.cred.secret)).disconnect();
      await driver.revoke(kept.ref);
    });
  });

  describe('server down during a revoke', () => {
    it('down: verify inconclusive, revoke fails retryably without the password; back: the revoke completes and is proven', async () => {
      const fast = new RedisDriver('orders-cache', parseRedisSettings({ ...server().settings, connectTimeoutMs: 500 }), server().access);
      try {
        const { cred, ref, withSecret } = await issue(READ, lease(), fast);
        expect(await fast.verify(ref)).toBe('still-valid'); // the admin connection is open, and dies with the server
        await server().stopServer();
        try {
          expect(await fast.verify(withSecret)).toBe('inconclusive');
          expect(await fast.verify(ref)).toBe('inconclusive');
          const err = (await fast.revoke(ref).catch((e: unknown) => e)) as TargetError;
          expect(err).toBeInstanceOf(TargetError);
          expect(err.retryable).toBe(true);
          expect(err.message).toMatch(/^redis revoke failed: connect ECONNREFUSED/);
          expect(err.message).not.toContain(cred.secret.password);
          expect(err.message).not.toContain(server().adminPassword);
        } finally {
          await server().startServer();
        }
        // The user survived the restart (the aclfile) and works until revoked: a connection the task opens now too.
        expect(await fast.verify(withSecret)).toBe('still-valid');
        const late = await connectWith(cred.secret);
        await fast.revoke(ref);
        expect(await refusal(late.call('PING'))).toBe('closed');
        late.disconnect();
        expect(await fast.verify(withSecret)).toBe('rejected');
        expect(await fast.listManaged()).toEqual([]);
      } finally {
        await fast.close();
      }
    });
  });

  describe('timing', () => {
    it('revoke (kill + delete + ACL SAVE + client list, one round trip) and verify (fresh AUTH + CLIENT LIST) with one open connection', async () => {
      for (let i = 0; i < 20; i++) {
        const { cred, ref, withSecret } = await issue(WRITE);
        const c = await connectWith(cred.secret);
        const [, ms] = await timed(() => driver.revoke(ref));
        timings.revoke.push(ms);
        const [verdict, vms] = await timed(() => driver.verify(withSecret));
        timings.verify.push(vms);
        expect(verdict).toBe('rejected');
        c.disconnect();
      }
    });
  });

  describe('what the task made', () => {
    it('keys the task wrote stay, usable by the next task of its level; nobody gains anything, the admin reads no key', async () => {
      const first = await issue(WRITE);
      const c = await connectWith(first.cred.secret);
      await c.call('HSET', 'orders:from-task', 'item', 'kiwi', 'qty', '9');
      await c.call('SET', 'orders:ttl-key', 'v', 'EX', '600');
      c.disconnect();
      const before = await ownerCall(server(), 'ACL', 'LIST');
      await driver.revoke(first.ref);

      // Keys have no owner in Redis: they stay, and whoever's patterns cover them (the level) can use them.
      const next = await issue(WRITE);
      const d = await connectWith(next.cred.secret);
      try {
        expect(await d.call('HGET', 'orders:from-task', 'item')).toBe('kiwi');
        expect(Number(await d.call('TTL', 'orders:ttl-key'))).toBeGreaterThan(0);
        expect(await d.call('DEL', 'orders:from-task', 'orders:ttl-key')).toBe(2);
      } finally {
        d.disconnect();
      }
      // The revoke touched no other user.
      const after = (await ownerCall(server(), 'ACL', 'LIST')) as string[];
      const others = (l: string[]) => l.filter((u) => !/^user tl_/.test(u));
      expect(others(after)).toEqual(others(before as string[]));
      // The admin the driver runs as reads no key: it manages users only.
      const admin = await connectWith({
        host: server().host,
        port: String(server().port),
        username: server().adminUser,
        password: server().adminPassword,
      });
      try {
        expect(await refusal(admin.call('GET', 'orders:1'))).toBe('NOPERM');
      } finally {
        admin.disconnect();
      }
      await driver.revoke(next.ref);
    });
  });

  describe('hostile names and leaks', () => {
    it('hostile task ids become prefix+hash names; ACL, aclfile, MONITOR and the server log show neither task text nor password', async () => {
      const monitor = await ownerConnection(server());
      const seenByMonitor: string[] = [];
      const m = await monitor.monitor();
      m.on('monitor', (_time: string, args: string[]) => seenByMonitor.push(args.join(' ')));
      const hostile = [
        'x on nopass +@all ~*',
        'line\nbreak\r\nuser evil on nopass',
        'ünï😀cødé',
        '"quoted" \'single\'',
        '>password',
        '(~* +@all)',
        'a'.repeat(500),
      ];
      const passwords: string[] = [];
      for (const taskId of hostile) {
        const { cred, ref, withSecret } = await issue(WRITE, lease(taskId));
        expect(ref.externalId).toMatch(/^tl_[0-9a-f]{40}$/);
        passwords.push(cred.secret.password!);
        const c = await connectWith(cred.secret);
        await c.call('PING');
        await driver.revoke(ref);
        c.disconnect();
        expect(await driver.verify(withSecret)).toBe('rejected');
      }
      await new Promise((r) => setTimeout(r, 50));
      m.disconnect();
      monitor.disconnect();
      const seen = seenByMonitor.join('\n');
      // MONITOR never shows ACL commands (administrative), and redacts AUTH: verify's login is there, its password not.
      expect(seen).toMatch(/auth \(redacted\) \(redacted\)/i);
      expect(seen).not.toMatch(/setuser/i);
      const acl = ((await ownerCall(server(), 'ACL', 'LIST')) as string[]).join('\n');
      const file = await readFile(server().aclFile!, 'utf8');
      const log = server().recentLogs().join('\n');
      for (const text of [seen, acl, file, log]) {
        for (const taskId of hostile) expect(text).not.toContain(taskId);
        for (const pw of passwords) expect(text).not.toContain(pw);
        expect(text).not.toContain('evil');
      }
      expect(await userExists(server(), 'evil')).toBe(false);
      expect(await driver.listManaged()).toEqual([]);
    });
  });

  describe('reconciliation, settings of the server, concurrency', () => {
    it("listManaged finds an orphan made behind the broker's back, ignores humans, and forgets it once revoked", async () => {
      const l = lease();
      const orphan = driver.externalId(l.taskId, READ);
      await ownerCall(server(), 'ACL', 'SETUSER', orphan, 'on', '>whatever-it-was', '~*', '+@all');
      await ownerCall(server(), 'ACL', 'SETUSER', 'tl_human', 'on', '>x');
      try {
        const managed = await driver.listManaged();
        expect(managed).toContain(orphan);
        expect(managed).not.toContain('tl_human');
        // Reconciliation revokes and verifies without a password: by name.
        await driver.revoke({ taskId: '(orphan)', grant: { target: 'orders-cache', access: 'orphan' }, externalId: orphan });
        expect(await driver.verify({ taskId: '(orphan)', grant: READ, externalId: orphan })).toBe('rejected');
        expect(await driver.listManaged()).not.toContain(orphan);
      } finally {
        await ownerCall(server(), 'ACL', 'DELUSER', 'tl_human');
      }
    });

    it('adminConcurrency 2: 12 parallel lifecycles, at most 2 jobs at once, one admin connection', async () => {
      const limited = new RedisDriver('orders-cache', parseRedisSettings({ ...server().settings, adminConcurrency: 2 }), server().access);
      // The file's own driver holds one admin connection already.
      const baseline = await clientCount(server(), server().adminUser);
      let peakAdmins = 0;
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          peakAdmins = Math.max(peakAdmins, await clientCount(server(), server().adminUser));
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      try {
        const verdicts = await Promise.all(
          Array.from({ length: 12 }, async () => {
            const { cred, ref, withSecret } = await issue(READ, lease(), limited);
            const c = await connectWith(cred.secret);
            await c.call('HGET', 'orders:1', 'item');
            await limited.revoke(ref);
            const after = await refusal(c.call('PING'));
            c.disconnect();
            return { after, verdict: await limited.verify(withSecret) };
          }),
        );
        expect(verdicts.map((v) => v.after)).toEqual(Array(12).fill('closed'));
        expect(verdicts.map((v) => v.verdict)).toEqual(Array(12).fill('rejected'));
        expect(await limited.listManaged()).toEqual([]);
      } finally {
        watching = false;
        await watcher;
        await limited.close();
      }
      expect(limited.limiter.peak).toBe(2);
      expect(peakAdmins - baseline).toBe(1);
    });

    it('aclSave auto: a server without an aclfile is detected (no ACL SAVE); aclSave true there fails the issue and leaves no user', async () => {
      const plain = await startEmbeddedRedis({ aclFile: false, seed: false });
      const auto = new RedisDriver('orders-cache', parseRedisSettings(plain.settings), plain.access);
      const forced = new RedisDriver('orders-cache', parseRedisSettings({ ...plain.settings, aclSave: true }), plain.access);
      try {
        const { cred, ref, withSecret } = await issue(READ, lease(), auto);
        (await connectWith(cred.secret)).disconnect();
        await auto.revoke(ref);
        expect(await auto.verify(withSecret)).toBe('rejected');

        const l = lease();
        const id = forced.externalId(l.taskId, READ);
        const err = (await forced.issue({ lease: l, grant: READ, externalId: id }).catch((e: unknown) => e)) as TargetError;
        expect(err).toBeInstanceOf(TargetError);
        expect(err.message).toMatch(/ACL SAVE/);
        expect(await ownerCall(plain, 'ACL', 'GETUSER', id)).toBeNull();
      } finally {
        await auto.close();
        await forced.close();
        await plain.stop();
      }
    });

    it('aclSave auto with an admin that may not CONFIG GET: the error names settings.aclSave; aclSave set explicitly works', async () => {
      const pw = randomUUID();
      await ownerCall(
        server(),
        'ACL',
        'SETUSER',
        'admin_noconfig',
        'on',
        `>${pw}`,
        '-@all',
        '+acl',
        '+client',
        '+multi',
        '+exec',
        '-config',
      );
      const auto = new RedisDriver(
        'orders-cache',
        parseRedisSettings({ ...server().settings, user: 'admin_noconfig', password: pw }),
        server().access,
      );
      const explicit = new RedisDriver(
        'orders-cache',
        parseRedisSettings({ ...server().settings, user: 'admin_noconfig', password: pw, aclSave: true }),
        server().access,
      );
      try {
        const l = lease();
        const err = (await auto
          .issue({ lease: l, grant: READ, externalId: auto.externalId(l.taskId, READ) })
          .catch((e: unknown) => e)) as Error;
        expect(err).toBeInstanceOf(TargetError);
        expect(err.message).toMatch(/targets\.orders-cache\.settings\.aclSave/);
        const { ref, withSecret } = await issue(READ, lease(), explicit);
        await explicit.revoke(ref);
        expect(await explicit.verify(withSecret)).toBe('rejected');
      } finally {
        await auto.close();
        await explicit.close();
        await ownerCall(server(), 'ACL', 'DELUSER', 'admin_noconfig');
      }
    });
  });
});
