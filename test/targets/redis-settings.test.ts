import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { TargetError } from '../../shared/lease/errors.ts';
import { ConfigError } from '../../shared/lease/errors.ts';
import { validateTargets } from '../../shared/policy/config.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import { clientsOf, Limiter, resolveAdminPassword } from '../../shared/targets/redis/connection.ts';
import { redisKind } from '../../shared/targets/redis/index.ts';
import type { RedisAdmin } from '../../shared/targets/redis/connection.ts';
import { passwordHash, setUserRules } from '../../shared/targets/redis/issue.ts';
import { managedUserPattern, userNameFor } from '../../shared/targets/redis/names.ts';
import { awaitClientsGone } from '../../shared/targets/redis/revoke.ts';
import { parseRedisAccess, parseRedisSettings } from '../../shared/targets/redis/settings.ts';
import type { RedisSettings } from '../../shared/targets/redis/settings.ts';
import { configWith } from './config-with.ts';

const KINDS = [...TARGET_KINDS, redisKind];
const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis-admin-AbCdEf';
const ENV = { partition: 'aws', region: 'eu-west-1', account: '123456789012', nag: { partition: 'P', region: 'R', account: 'A' } };
const READ = { keys: ['%R~orders:*'], commands: ['+@read'] };

const target = (settings: unknown, access: Record<string, unknown> = { read: READ }) =>
  validateTargets(configWith({ cache: { kind: 'redis', settings, access } }), KINDS)[0]!;

const messageOf = (fn: () => unknown): string => {
  try {
    fn();
    return '';
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
};

const tmp: string[] = [];
afterAll(async () => {
  for (const d of tmp) await rm(d, { recursive: true, force: true });
});

describe('redis settings and access levels', () => {
  it('a minimal config gets its defaults', () => {
    const t = target({ host: 'cache.internal', user: 'tasklease', passwordSecret: ARN });
    expect(t.settings).toEqual({
      host: 'cache.internal',
      port: 6379,
      tls: false,
      user: 'tasklease',
      passwordSecret: ARN,
      userPrefix: 'tl_',
      aclSave: 'auto',
      adminConcurrency: 4,
      connectTimeoutMs: 5_000,
      commandTimeoutMs: 10_000,
      sessionDrainTimeoutMs: 5_000,
    });
    expect(t.access.read).toEqual({ keys: ['%R~orders:*'], channels: [], commands: ['+@read'] });
    expect(
      parseRedisAccess({
        keys: ['~a:*', '%W~b:*', '%RW~c?'],
        channels: ['&news.*'],
        commands: ['+@read', '-@scripting', '+get', '+object|encoding'],
      }),
    ).toEqual({
      keys: ['~a:*', '%W~b:*', '%RW~c?'],
      channels: ['&news.*'],
      commands: ['+@read', '-@scripting', '+get', '+object|encoding'],
    });
  });

  it('every bad field is named', () => {
    const message = messageOf(() =>
      validateTargets(
        configWith({
          cache: {
            kind: 'redis',
            settings: {
              host: '',
              port: 70_000,
              user: 'a b',
              password: 'x',
              passwordSecret: ARN,
              userPrefix: 'TL-',
              aclSave: 'yes',
              tls: 'on',
            },
            access: { read: READ },
          },
        }),
        KINDS,
      ),
    );
    for (const field of [
      'targets.cache.settings.host',
      'targets.cache.settings.port: must be between 1 and 65535',
      'targets.cache.settings.user: must be visible ASCII without spaces',
      'targets.cache.settings.userPrefix',
      "targets.cache.settings.aclSave: must be 'auto', true or false",
      'targets.cache.settings.tls: must be true or false',
    ]) {
      expect(message).toContain(field);
    }
    expect(messageOf(() => parseRedisSettings({ host: 'h', user: 'a', password: 'x', passwordSecret: ARN }))).toMatch(
      /password: exactly one of password or passwordSecret is required/,
    );
    expect(messageOf(() => parseRedisSettings({ host: 'h', user: 'a' }))).toMatch(/password: exactly one/);
    expect(messageOf(() => parseRedisSettings({ host: 'h', user: 'a', passwordSecret: 'env:1BAD' }))).toMatch(
      /passwordSecret: env: needs a variable name/,
    );
    expect(messageOf(() => parseRedisSettings({ host: 'h', user: 'a', password: 'x', userPrefix: 'a'.repeat(33) }))).toMatch(
      /userPrefix: must be at most 32 characters/,
    );
  });

  it('access rules follow their grammar: nothing but key, channel and command rules, no admin categories', () => {
    const bad = messageOf(() =>
      validateTargets(
        configWith({
          cache: {
            kind: 'redis',
            settings: { host: 'h', user: 'u', passwordSecret: ARN },
            access: {
              a: { keys: ['allkeys'], commands: ['+@all'] },
              b: { keys: ['~a b'], commands: ['+@admin'] },
              c: { keys: ['~ok'], channels: ['allchannels'], commands: ['nopass'] },
              d: { keys: [], commands: [] },
              e: { keys: ['~ok'], commands: ['+config|set'] },
            },
          },
        }),
        KINDS,
      ),
    );
    // describeIssues keeps the first five issues; each names its field.
    for (const field of [
      'targets.cache.access.a.keys[0]: must be a key pattern',
      "targets.cache.access.a.commands[0]: '+@all' is not grantable",
      'targets.cache.access.b.keys[0]: must be a key pattern',
      "targets.cache.access.b.commands[0]: '+@admin' is not grantable",
      'targets.cache.access.c.channels[0]: must be a channel pattern',
    ]) {
      expect(bad).toContain(field);
    }
    const one = (level: unknown) => messageOf(() => parseRedisAccess(level));
    expect(one({ keys: ['~ok'], commands: ['nopass'] })).toMatch(/commands\[0\]: must be a command rule/);
    expect(one({ keys: [], commands: ['+@read'] })).toMatch(/keys: must list at least one key pattern/);
    expect(one({ keys: ['~ok'], commands: ['+config|set'] })).toMatch(/commands\[0\]: '\+config\|set' is not grantable/);
    expect(one({ keys: ['~ok'], commands: ['+@dangerous'] })).toMatch(/not grantable/);
    expect(one({ keys: ['~ok'], commands: ['+@nosuch'] })).toMatch(/unknown category @nosuch/);
    for (const hostile of ['>password', '#0123', 'on', 'reset', '(~* +@all)', '~ok +@all', '~"q"', "~'q'", '~ok\n', 'resetkeys']) {
      expect(one({ keys: [hostile], commands: ['+@read'] }), hostile).toMatch(/keys\[0\]: must be a key pattern/);
      expect(one({ keys: ['~ok'], commands: [hostile] }), hostile).toMatch(/commands\[0\]: /);
    }
    // Taking away is always allowed, even of the ungrantable.
    expect(parseRedisAccess({ keys: ['~ok'], commands: ['+@read', '-@dangerous', '-@all'] }).commands).toHaveLength(3);
  });
});

describe('names and rules', () => {
  it('prefix + 160-bit hash of (task, grant): never task text, deterministic, matched exactly', () => {
    const grant = { target: 'orders-cache', access: 'read' };
    for (const taskId of ['x on nopass +@all', 'line\nbreak', 'ünï😀cødé', 'a'.repeat(500), '']) {
      const name = userNameFor('tl_', taskId, grant);
      expect(name).toMatch(/^tl_[0-9a-f]{40}$/);
      expect(name).toBe(userNameFor('tl_', taskId, grant));
      expect(managedUserPattern('tl_').test(name)).toBe(true);
    }
    expect(userNameFor('tl_', 't', grant)).not.toBe(userNameFor('tl_', 't', { ...grant, access: 'write' }));
    expect(managedUserPattern('tl_').test('tl_human')).toBe(false);
    expect(managedUserPattern('tl_').test(`tl_${'a'.repeat(40)}\n`)).toBe(false);
    expect(managedUserPattern('task-lease_').test(userNameFor('task-lease_', 't', grant))).toBe(true);
  });

  it('ACL SETUSER rules: reset first, the password only as its SHA-256, the level, then -@admin -@dangerous', () => {
    const hash = passwordHash('p4ss-w0rd-value');
    // What Redis itself stores for `>password` (ACL GETUSER shows this form).
    expect(hash).toBe(createHash('sha256').update('p4ss-w0rd-value').digest('hex'));
    const level = parseRedisAccess({ keys: ['~orders:*'], channels: ['&orders:*'], commands: ['+@read', '+@write'] });
    expect(setUserRules(level, hash)).toEqual([
      'reset',
      'on',
      `#${hash}`,
      '~orders:*',
      '&orders:*',
      '+@read',
      '+@write',
      '-@admin',
      '-@dangerous',
    ]);
    expect(setUserRules(level, hash).join(' ')).not.toContain('p4ss-w0rd-value');
  });

  it('CLIENT LIST parsing matches the user field exactly', () => {
    const list = [
      'id=5 addr=127.0.0.1:1 name= user=tl_abc cmd=get',
      'id=6 addr=127.0.0.1:2 name=user=tl_abc user=default cmd=get',
      'id=7 addr=127.0.0.1:3 name= user=tl_abcd cmd=get',
      'id=8 addr=127.0.0.1:4 name= user=tl_abc cmd=blpop',
    ].join('\n');
    expect(clientsOf(list, 'tl_abc')).toEqual(['5', '8']);
  });

  it('the limiter never runs more than its bound', async () => {
    const limiter = new Limiter(2);
    let now = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 10 }, () =>
        limiter.run(async () => {
          peak = Math.max(peak, ++now);
          await new Promise((r) => setTimeout(r, 2));
          now--;
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(limiter.peak).toBe(2);
  });
});

describe('admin password references', () => {
  const base = (passwordSecret: string) => parseRedisSettings({ host: 'h', user: 'a', passwordSecret }) as RedisSettings;

  it('file: and env: are read by the driver; anything else goes to the runtime resolver', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tasklease-redis-ref-'));
    tmp.push(dir);
    const file = path.join(dir, 'admin-password');
    await writeFile(file, 'from-a-file\n', { mode: 0o600 });
    expect(await resolveAdminPassword(base(`file:${file}`), 'cache', undefined)).toBe('from-a-file');
    process.env.TL_TEST_REDIS_ADMIN = 'from-env';
    try {
      expect(await resolveAdminPassword(base('env:TL_TEST_REDIS_ADMIN'), 'cache', undefined)).toBe('from-env');
    } finally {
      delete process.env.TL_TEST_REDIS_ADMIN;
    }
    await expect(resolveAdminPassword(base('env:TL_TEST_REDIS_UNSET'), 'cache', undefined)).rejects.toThrow(
      /targets\.cache\.settings\.passwordSecret: env:TL_TEST_REDIS_UNSET is not set/,
    );
    await expect(resolveAdminPassword(base(`file:${dir}/missing`), 'cache', undefined)).rejects.toThrow(/passwordSecret: cannot read/);
    expect(await resolveAdminPassword(base(ARN), 'cache', async (ref) => `resolved ${ref.slice(-6)}`)).toBe('resolved AbCdEf');
    expect(() => redisKind.create({ name: 'cache', settings: base(ARN), access: {} }, {})).toThrow(
      /targets\.cache\.settings\.passwordSecret needs a runtime with a secret resolver/,
    );
    expect(redisKind.create({ name: 'cache', settings: base('env:X'), access: {} }, {}).kind).toBe('redis');
  });
});

describe('what the kind needs in AWS', () => {
  it('GetSecretValue on the admin secret only, the VPC when configured; plain TCP is a warning', () => {
    const vpc = { vpcId: 'vpc-0abc', subnetIds: ['subnet-0a', 'subnet-0b'], securityGroupIds: ['sg-0c'] };
    const t = target({ host: 'cache.internal', user: 'tasklease', passwordSecret: ARN, tls: true, vpc });
    expect(redisKind.aws.needs(t as never, ENV)).toEqual({
      statements: [{ sid: 'ReadRedisAdminSecrets', actions: ['secretsmanager:GetSecretValue'], resources: [ARN], job: 'any' }],
      vpc,
    });
    const byName = redisKind.aws.needs(target({ host: 'h', user: 'u', passwordSecret: 'prod/redis-admin' }) as never, ENV);
    expect(byName.statements[0]?.resources).toEqual(['arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/redis-admin-??????']);
    expect(Object.keys(byName.statements[0]?.wildcardReasons ?? {})).toEqual(['arn:P:secretsmanager:R:A:secret:prod/redis-admin-??????']);
    expect(byName.vpc).toBeUndefined();
    expect(byName.warnings).toEqual(["targets.cache.settings.tls is false: the admin's and every task's AUTH cross the network in clear"]);
  });

  it('refuses what cannot work in AWS, naming the field', () => {
    expect(() => redisKind.aws.needs(target({ host: 'h', user: 'u', password: 'inline' }) as never, ENV)).toThrow(
      /targets\.cache\.settings\.password would be written into the CloudFormation template[\s\S]*use targets\.cache\.settings\.passwordSecret/,
    );
    expect(() => redisKind.aws.needs(target({ host: 'h', user: 'u', passwordSecret: 'file:/etc/pw' }) as never, ENV)).toThrow(
      /targets\.cache\.settings\.passwordSecret: 'file:' references work only outside AWS/,
    );
    expect(() => redisKind.aws.needs(target({ host: 'h', user: 'u', passwordSecret: 'env:PW' }) as never, ENV)).toThrow(
      /targets\.cache\.settings\.passwordSecret: 'env:' references work only outside AWS/,
    );
  });
});

describe('the drain after the delete', () => {
  /** A server whose CLIENT LIST shows the user's clients `lingering` more times (Redis 7 frees them at once; older or patched ones may not). */
  function fakeRedis(lingering: number) {
    const sent: string[][] = [];
    const redis = {
      multi() {
        const batch: string[][] = [];
        const chain = {
          call(...args: string[]) {
            batch.push(args);
            return chain;
          },
          async exec() {
            sent.push(...batch);
            const list =
              lingering-- > 0 ? 'id=41 addr=a name= user=tl_x cmd=get\nid=1 addr=b name= user=owner' : 'id=1 addr=b name= user=owner';
            return batch.map((c) => [null, c[1] === 'LIST' ? list : 1]);
          },
        };
        return chain;
      },
    };
    return { redis: redis as unknown as Redis, sent };
  }
  const admin = (sessionDrainTimeoutMs: number) =>
    ({ settings: parseRedisSettings({ host: 'h', user: 'a', password: 'x', sessionDrainTimeoutMs }) }) as unknown as RedisAdmin;

  it('kills by id and re-reads until no client of the user is listed', async () => {
    const { redis, sent } = fakeRedis(2);
    await awaitClientsGone(admin(5_000), redis, 'tl_x', ['41']);
    expect(sent.filter((c) => c[1] === 'KILL')).toEqual([
      ['CLIENT', 'KILL', 'ID', '41'],
      ['CLIENT', 'KILL', 'ID', '41'],
      ['CLIENT', 'KILL', 'ID', '41'],
    ]);
  });

  it('nothing listed: returns without a round trip; never gone: fails retryably at the drain timeout', async () => {
    const none = fakeRedis(0);
    await awaitClientsGone(admin(5_000), none.redis, 'tl_x', []);
    expect(none.sent).toEqual([]);
    const stuck = fakeRedis(Number.POSITIVE_INFINITY);
    const err = (await awaitClientsGone(admin(100), stuck.redis, 'tl_x', ['41']).catch((e: unknown) => e)) as TargetError;
    expect(err).toBeInstanceOf(TargetError);
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/1 clients of tl_x still open after 100 ms/);
  });
});
