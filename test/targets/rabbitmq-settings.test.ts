import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, TargetError } from '../../shared/lease/errors.ts';
import { validateTargets } from '../../shared/policy/config.ts';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import { rabbitmqKind } from '../../shared/targets/rabbitmq/index.ts';
import { rabbitSha256Hash, RabbitmqDriver } from '../../shared/targets/rabbitmq/driver.ts';
import { ManagementApi, resolveAdminPassword } from '../../shared/targets/rabbitmq/management.ts';
import { managedUserPattern, userNameFor } from '../../shared/targets/rabbitmq/names.ts';
import { parseRabbitmqSettings } from '../../shared/targets/rabbitmq/settings.ts';
import { configWith } from './config-with.ts';

/* The rabbitmq kind without a broker: config validation, AWS needs, names, the password hash, secret references, error hygiene. */
const KINDS = [...TARGET_KINDS, rabbitmqKind];
const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:rabbit-admin-AbCdEf';
const ENV = { partition: 'aws', region: 'eu-west-1', account: '123456789012', nag: { partition: 'P', region: 'R', account: 'A' } };
const ACCESS = { write: { vhosts: { orders: { configure: '^orders\\.', write: '^orders\\.', read: '^orders\\.' } } } };
const SETTINGS = {
  managementUrl: 'https://rabbit.internal:15671/',
  amqpUrl: 'amqps://rabbit.internal',
  adminUser: 'admin',
  adminPasswordSecret: ARN,
};

const target = (settings: Record<string, unknown>, access: Record<string, unknown> = ACCESS) =>
  configWith({ bus: { kind: 'rabbitmq', settings, access } });
const validate = (settings: Record<string, unknown>, access?: Record<string, unknown>) => validateTargets(target(settings, access), KINDS);
const errorOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('did not throw');
};

describe('rabbitmq settings and access levels', () => {
  it('a valid target gets its defaults', () => {
    const [t] = validate(SETTINGS);
    expect(t?.settings).toMatchObject({
      ...SETTINGS,
      userPrefix: 'tl-',
      adminConcurrency: 4,
      requestTimeoutMs: 5_000,
      connectTimeoutMs: 5_000,
      sessionDrainTimeoutMs: 10_000,
    });
    expect(t?.access).toEqual(ACCESS);
  });

  it.each([
    [{ ...SETTINGS, managementUrl: 'ftp://rabbit/' }, /targets\.bus\.settings\.managementUrl: must use http:\/\/ or https:\/\//],
    [{ ...SETTINGS, managementUrl: 'not a url' }, /targets\.bus\.settings\.managementUrl: must be a URL/],
    [
      { ...SETTINGS, managementUrl: 'https://admin:pw@rabbit/' },
      /targets\.bus\.settings\.managementUrl: must not contain a user name or password/,
    ],
    [{ ...SETTINGS, amqpUrl: 'amqp://rabbit/orders' }, /targets\.bus\.settings\.amqpUrl: must not name a vhost/],
    [{ ...SETTINGS, amqpUrl: 'http://rabbit' }, /targets\.bus\.settings\.amqpUrl: must use amqp:\/\/ or amqps:\/\//],
    [
      { ...SETTINGS, adminPasswordSecret: undefined },
      /targets\.bus\.settings\.adminPassword: exactly one of adminPassword or adminPasswordSecret/,
    ],
    [{ ...SETTINGS, adminPassword: 'x' }, /targets\.bus\.settings\.adminPassword: exactly one of/],
    [{ ...SETTINGS, adminPasswordSecret: 'env:1BAD' }, /targets\.bus\.settings\.adminPasswordSecret: env: needs a variable name/],
    [{ ...SETTINGS, adminPasswordSecret: 'file:' }, /targets\.bus\.settings\.adminPasswordSecret: file: needs a path/],
    [{ ...SETTINGS, userPrefix: 'Tl_' }, /targets\.bus\.settings\.userPrefix: must be a lower-case letter/],
    [{ ...SETTINGS, adminConcurrency: 0 }, /targets\.bus\.settings\.adminConcurrency: must be between 1 and 100/],
    [{ ...SETTINGS, password: 'x' }, /targets\.bus\.settings/],
  ])('refuses bad settings naming the field (%#)', (settings, message) => {
    expect(errorOf(() => validate(settings))).toMatch(message);
  });

  it.each([
    [{ write: { vhosts: {} } }, /targets\.bus\.access\.write\.vhosts: must name at least one vhost/],
    [
      { write: { vhosts: { orders: { configure: '(', write: '', read: '' } } } },
      /targets\.bus\.access\.write\.vhosts\.orders\.configure: must be a valid regular expression/,
    ],
    [{ write: { vhosts: { orders: { configure: '', write: '' } } } }, /targets\.bus\.access\.write\.vhosts\.orders\.read: /],
    [{ write: { vhosts: { orders: { configure: '', write: '', read: '', topic: '.*' } } } }, /targets\.bus\.access\.write\.vhosts\.orders/],
    [{ write: { vhost: 'orders' } }, /targets\.bus\.access\.write/],
    [{ write: { ...ACCESS.write, maxConnections: 0 } }, /targets\.bus\.access\.write\.maxConnections: must be between 1 and 10000/],
  ])('refuses bad access levels naming the field (%#)', (access, message) => {
    expect(errorOf(() => validate(SETTINGS, access))).toMatch(message);
  });
});

describe('rabbitmq in AWS', () => {
  const needs = (settings: Record<string, unknown>) => rabbitmqKind.aws.needs(validate(settings)[0] as never, ENV);

  it('reads only the admin secret and reaches the broker through the configured VPC', () => {
    const vpc = { vpcId: 'vpc-0abc', subnetIds: ['subnet-0a'], securityGroupIds: ['sg-0a'] };
    expect(needs({ ...SETTINGS, vpc })).toEqual({
      statements: [{ sid: 'ReadRabbitmqAdminSecrets', actions: ['secretsmanager:GetSecretValue'], resources: [ARN], job: 'any' }],
      vpc,
    });
    const byName = needs({ ...SETTINGS, adminPasswordSecret: 'rabbit-admin' });
    expect(byName.statements[0]?.resources).toEqual(['arn:aws:secretsmanager:eu-west-1:123456789012:secret:rabbit-admin-??????']);
    expect(Object.keys(byName.statements[0]?.wildcardReasons ?? {})).toEqual(['arn:P:secretsmanager:R:A:secret:rabbit-admin-??????']);
    expect(byName.vpc).toBeUndefined();
  });

  it('refuses what cannot work in AWS naming the field, warns about clear-text transports', () => {
    expect(errorOf(() => needs({ ...SETTINGS, adminPasswordSecret: undefined, adminPassword: 'pw' }))).toMatch(
      /^targets\.bus\.settings\.adminPassword would be written into the CloudFormation template/,
    );
    expect(errorOf(() => needs({ ...SETTINGS, adminPasswordSecret: 'file:/etc/rabbit.pw' }))).toMatch(
      /^targets\.bus\.settings\.adminPasswordSecret: 'file:' references work only outside AWS/,
    );
    expect(errorOf(() => needs({ ...SETTINGS, adminPasswordSecret: 'env:RABBIT_PW' }))).toMatch(/'env:' references work only outside AWS/);
    expect(needs(SETTINGS).warnings).toBeUndefined();
    expect(needs({ ...SETTINGS, managementUrl: 'http://rabbit:15672/', amqpUrl: 'amqp://rabbit' }).warnings).toEqual([
      expect.stringMatching(/^targets\.bus\.settings\.managementUrl uses http:\/\//),
      expect.stringMatching(/^targets\.bus\.settings\.amqpUrl uses amqp:\/\//),
    ]);
  });
});

describe('rabbitmq names and password hashes', () => {
  it('user names are prefix + 40 hex of (task, grant): deterministic, no task text, only ours match', () => {
    const grant = { target: 'bus', access: 'write' };
    const a = userNameFor('tl-', 'orders/../admin', grant);
    expect(a).toMatch(/^tl-[0-9a-f]{40}$/);
    expect(userNameFor('tl-', 'orders/../admin', grant)).toBe(a);
    expect(userNameFor('tl-', 'orders/../admin', { ...grant, access: 'read' })).not.toBe(a);
    expect(userNameFor('tl-', 'other', grant)).not.toBe(a);
    const pattern = managedUserPattern('tl.x-');
    expect(pattern.test(userNameFor('tl.x-', 't', grant))).toBe(true);
    // The '.' of the prefix is literal.
    expect(pattern.test(userNameFor('tlax-', 't', grant))).toBe(false);
    expect(pattern.test('tl.x-human')).toBe(false);
    expect(pattern.test(`${userNameFor('tl.x-', 't', grant)}0`)).toBe(false);
  });

  it('the hash is RabbitMQ’s salted SHA-256: base64(salt4 ‖ sha256(salt4 ‖ password)), a fresh salt each time', () => {
    const pw = 'correct horse battery staple';
    const raw = Buffer.from(rabbitSha256Hash(pw), 'base64');
    expect(raw).toHaveLength(36);
    const salt = raw.subarray(0, 4);
    expect(raw.subarray(4)).toEqual(
      createHash('sha256')
        .update(Buffer.concat([salt, Buffer.from(pw)]))
        .digest(),
    );
    expect(rabbitSha256Hash(pw)).not.toBe(rabbitSha256Hash(pw));
    expect(rabbitSha256Hash(pw, Buffer.from([1, 2, 3, 4]))).toBe(rabbitSha256Hash(pw, Buffer.from([1, 2, 3, 4])));
  });
});

describe('rabbitmq admin password references and API errors', () => {
  const dir = fs.mkdtemp(path.join(os.tmpdir(), 'tasklease-rabbit-ref-'));
  afterAll(async () => fs.rm(await dir, { recursive: true, force: true }));

  it('file:, env: and a Secrets Manager reference resolve; a missing resolver is a ConfigError naming the field', async () => {
    const file = path.join(await dir, 'pw');
    await fs.writeFile(file, 'from-file\n');
    const s = (ref: string) => parseRabbitmqSettings({ ...SETTINGS, adminPasswordSecret: ref });
    expect(await resolveAdminPassword(s(`file:${file}`), 'bus', undefined)).toBe('from-file');
    process.env.TL_RABBIT_TEST_PW = 'from-env';
    expect(await resolveAdminPassword(s('env:TL_RABBIT_TEST_PW'), 'bus', undefined)).toBe('from-env');
    delete process.env.TL_RABBIT_TEST_PW;
    await expect(resolveAdminPassword(s('env:TL_RABBIT_TEST_PW'), 'bus', undefined)).rejects.toThrow(
      /targets\.bus\.settings\.adminPasswordSecret: the environment variable is not set/,
    );
    expect(await resolveAdminPassword(s(ARN), 'bus', async (ref) => `sm:${ref.length}`)).toBe(`sm:${ARN.length}`);
    // The registry refuses a Secrets Manager reference in a runtime that cannot resolve it, before any request.
    expect(() => buildTargetRegistry(target(SETTINGS), KINDS, {})).toThrow(
      /targets\.bus\.settings\.adminPasswordSecret needs a runtime with a secret resolver/,
    );
    expect(buildTargetRegistry(target({ ...SETTINGS, adminPasswordSecret: `file:${file}` }), KINDS, {}).names()).toEqual(['bus']);
  });

  it('an API error that echoes the request or the admin password reaches no message; a 401 re-resolves the password', async () => {
    const seen: string[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c));
      req.on('end', () => {
        seen.push(req.headers.authorization ?? '');
        const status = seen.length === 1 ? 401 : 500;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'x', reason: `echo ${body} ${req.headers.authorization} admin-pw-${seen.length}\n` }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      let resolved = 0;
      const settings = parseRabbitmqSettings({ ...SETTINGS, managementUrl: `http://127.0.0.1:${port}/` });
      const api = new ManagementApi('bus', settings, async () => `admin-pw-${++resolved}`);
      const e1 = await api.request('issue', 'PUT', '/api/users/tl-x', [201], { password_hash: 'HASH' }, ['HASH']).catch((e: unknown) => e);
      expect(e1).toBeInstanceOf(TargetError);
      expect((e1 as TargetError).retryable).toBe(true);
      const e2 = await api.request('issue', 'PUT', '/api/users/tl-x', [201], { password_hash: 'HASH' }, ['HASH']).catch((e: unknown) => e);
      expect(resolved).toBe(2); // re-resolved after the 401
      for (const e of [e1, e2]) {
        const m = (e as Error).message;
        expect(m).toMatch(/^rabbitmq issue failed: HTTP (401|500): echo /);
        expect(m).not.toContain('HASH');
        expect(m).not.toContain('admin-pw-');
        expect(m).not.toMatch(/Basic [A-Za-z0-9+/=]{8,}/);
        expect(m).not.toMatch(/[\n\r]/);
      }
      expect(seen).toHaveLength(2);
      // The password itself is only ever inside the Basic credentials, never elsewhere in the message.
      expect((e2 as Error).message).not.toContain(Buffer.from('admin:admin-pw-2').toString('base64'));
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('a driver refuses to touch a user name it does not make', async () => {
    const driver = new RabbitmqDriver('bus', parseRabbitmqSettings({ ...SETTINGS, managementUrl: 'http://127.0.0.1:9/' }), ACCESS, {
      resolveSecret: async () => 'pw',
    });
    const grant = { target: 'bus', access: 'write' };
    for (const externalId of ['guest', 'admin', 'tl-human', '../api/users/admin']) {
      const err = await driver.revoke({ taskId: 't', grant, externalId }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TargetError);
      expect((err as TargetError).retryable).toBe(false);
      expect((err as Error).message).toBe('rabbitmq target bus: external id is not a tasklease-managed user name');
    }
  });
});
