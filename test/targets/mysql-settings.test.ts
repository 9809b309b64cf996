import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/lease/errors.ts';
import { validateTargets } from '../../shared/policy/config.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import { resolveAdminPassword } from '../../shared/targets/mysql/connection.ts';
import { mysqlKind } from '../../shared/targets/mysql/index.ts';
import { expiryDays, issueStatements, nativePasswordHash } from '../../shared/targets/mysql/issue.ts';
import { managedUserPattern, MAX_USER_LENGTH, userNameFor } from '../../shared/targets/mysql/names.ts';
import { parseMysqlAccess, parseMysqlSettings } from '../../shared/targets/mysql/settings.ts';
import type { MysqlSettings } from '../../shared/targets/mysql/settings.ts';
import { configWith } from './config-with.ts';

const KINDS = [...TARGET_KINDS, mysqlKind];
const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:mysql-admin-AbCdEf';
const ENV = { partition: 'aws', region: 'eu-west-1', account: '123456789012', nag: { partition: 'P', region: 'R', account: 'A' } };
const READ = { grants: [{ privileges: ['select'], on: 'orders.*' }] };

const target = (settings: unknown, access: Record<string, unknown> = { read: READ }) =>
  validateTargets(configWith({ db: { kind: 'mysql', settings, access } }), KINDS)[0]!;

const tmp: string[] = [];
afterAll(async () => {
  for (const d of tmp) await rm(d, { recursive: true, force: true });
});

describe('mysql settings and access levels', () => {
  it('a minimal config gets its defaults; privileges are normalised', () => {
    const t = target({ host: 'db.internal', user: 'tasklease', passwordSecret: ARN });
    expect(t.settings).toEqual({
      host: 'db.internal',
      port: 3306,
      user: 'tasklease',
      passwordSecret: ARN,
      flavor: 'auto',
      userPrefix: 'tl_',
      userHost: '%',
      adminPoolMax: 4,
      connectTimeoutMs: 5_000,
      sessionDrainTimeoutMs: 10_000,
    });
    expect(t.access.read).toEqual({ grants: [{ privileges: ['SELECT'], on: 'orders.*' }] });
    expect(parseMysqlAccess({ role: 'orders_write', maxUserConnections: 5 })).toEqual({ role: 'orders_write', maxUserConnections: 5 });
  });

  it('every bad field is named', () => {
    const bad = () =>
      target(
        { host: '', port: 70_000, user: 'a', password: 'x', passwordSecret: ARN, userPrefix: 'TL-', flavor: 'oracle' },
        {
          read: { grants: [{ privileges: ['SUPER'], on: '*.*' }] },
          write: {},
          odd: { role: "x'; DROP" },
        },
      );
    expect(bad).toThrow(ConfigError);
    const message = (() => {
      try {
        bad();
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    })();
    for (const field of [
      'targets.db.settings.host',
      'targets.db.settings.port: must be between 1 and 65535',
      'targets.db.settings.userPrefix',
      'targets.db.settings.flavor',
      'targets.db.access.read.grants[0].privileges[0]: must be one of SELECT',
      "targets.db.access.read.grants[0].on: must be 'schema.*' or 'schema.table' (no global *.* grants)",
      'targets.db.access.write.role: an access level needs a role or grants',
      'targets.db.access.odd.role: must be a MySQL identifier',
    ]) {
      expect(message).toContain(field);
    }
    expect(() => parseMysqlSettings({ host: 'h', user: 'a', password: 'x', passwordSecret: ARN })).toThrow(
      /password: exactly one of password or passwordSecret is required/,
    );
    expect(() => parseMysqlSettings({ host: 'h', user: 'a' })).toThrow(/password: exactly one/);
    expect(() => parseMysqlSettings({ host: 'h', user: 'a', password: 'x', userPrefix: 'abcdefghi' })).toThrow(
      /userPrefix: must be at most 8 characters/,
    );
    expect(() => parseMysqlSettings({ host: 'h', user: 'a', passwordSecret: 'env:1BAD' })).toThrow(
      /passwordSecret: env: needs a variable name/,
    );
    expect(() => parseMysqlSettings({ host: 'h', user: 'a', password: 'x', userHost: "%' OR 1" })).toThrow(
      /userHost: must be a MySQL host/,
    );
  });
});

describe('names', () => {
  it('prefix + hash of (task, grant): never task text, at most 32 characters, deterministic', () => {
    const grant = { target: 'orders-db', access: 'read' };
    for (const taskId of ["x'; DROP USER root; --", 'back`tick`', 'ünï😀cødé', 'a'.repeat(500), '']) {
      const name = userNameFor('tl_', taskId, grant);
      expect(name).toMatch(/^tl_[0-9a-f]{29}$/);
      expect(name).toBe(userNameFor('tl_', taskId, grant));
      expect(managedUserPattern('tl_').test(name)).toBe(true);
    }
    expect(userNameFor('tl_', 't', grant)).not.toBe(userNameFor('tl_', 't', { ...grant, access: 'write' }));
    const long = userNameFor('tasklea_', 't', grant);
    expect(long).toHaveLength(MAX_USER_LENGTH);
    expect(long).toMatch(/^tasklea_[0-9a-f]{24}$/);
    expect(managedUserPattern('tl_').test('tl_human')).toBe(false);
  });
});

describe('issue statements', () => {
  const secret = { password: 'p4ss-w0rd-value', hash: nativePasswordHash('p4ss-w0rd-value') };

  it('MariaDB gets the native hash (the password never reaches SQL), every name quoted', () => {
    const sql = issueStatements(
      'mariadb',
      { role: 'orders_write', grants: [{ privileges: ['SELECT', 'INSERT'], on: 'orders.orders' }], maxUserConnections: 3 },
      'tl_abc',
      '10.0.%',
      secret,
      2,
    );
    expect(sql).toEqual([
      `CREATE USER IF NOT EXISTS 'tl_abc'@'10.0.%' IDENTIFIED BY PASSWORD '${secret.hash}' WITH MAX_USER_CONNECTIONS 3 ACCOUNT UNLOCK PASSWORD EXPIRE INTERVAL 2 DAY`,
      `ALTER USER 'tl_abc'@'10.0.%' IDENTIFIED BY PASSWORD '${secret.hash}' WITH MAX_USER_CONNECTIONS 3 ACCOUNT UNLOCK PASSWORD EXPIRE INTERVAL 2 DAY`,
      "GRANT SELECT, INSERT ON `orders`.`orders` TO 'tl_abc'@'10.0.%'",
      "GRANT `orders_write` TO 'tl_abc'@'10.0.%'",
      "SET DEFAULT ROLE `orders_write` FOR 'tl_abc'@'10.0.%'",
    ]);
    expect(sql.join('\n')).not.toContain(secret.password);
    // MySQL's stored form for that password, as SELECT PASSWORD('mariadb') documents it.
    expect(nativePasswordHash('mariadb')).toBe('*54958E764CE10E50764C2EECBB71D01F08549980');
  });

  it('MySQL 8 gets IDENTIFIED BY (it redacts passwords in its logs) and SET DEFAULT ROLE … TO', () => {
    const sql = issueStatements('mysql', { role: 'r' }, 'tl_abc', '%', secret, 1);
    expect(sql[0]).toBe(
      `CREATE USER IF NOT EXISTS 'tl_abc'@'%' IDENTIFIED BY 'p4ss-w0rd-value' ACCOUNT UNLOCK PASSWORD EXPIRE INTERVAL 1 DAY`,
    );
    expect(sql.at(-1)).toBe("SET DEFAULT ROLE `r` TO 'tl_abc'@'%'");
  });

  it('password expiry is whole days, at least one, never before the lease ends', () => {
    const now = Date.UTC(2030, 0, 1);
    expect(expiryDays(now + 60_000, now)).toBe(1);
    expect(expiryDays(now - 60_000, now)).toBe(1);
    expect(expiryDays(now + 86_400_000, now)).toBe(1);
    expect(expiryDays(now + 86_400_001, now)).toBe(2);
    expect(expiryDays(now + 36 * 3_600_000, now)).toBe(2);
  });
});

describe('admin password references', () => {
  const base = (passwordSecret: string) => parseMysqlSettings({ host: 'h', user: 'a', passwordSecret }) as MysqlSettings;

  it('file: and env: are read by the driver; anything else goes to the runtime resolver', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'tasklease-mysql-ref-'));
    tmp.push(dir);
    const file = path.join(dir, 'admin-password');
    await writeFile(file, 'from-a-file\n', { mode: 0o600 });
    expect(await resolveAdminPassword(base(`file:${file}`), 'db', undefined)).toBe('from-a-file');
    process.env.TL_TEST_MYSQL_ADMIN = 'from-env';
    try {
      expect(await resolveAdminPassword(base('env:TL_TEST_MYSQL_ADMIN'), 'db', undefined)).toBe('from-env');
    } finally {
      delete process.env.TL_TEST_MYSQL_ADMIN;
    }
    await expect(resolveAdminPassword(base('env:TL_TEST_MYSQL_UNSET'), 'db', undefined)).rejects.toThrow(
      /targets\.db\.settings\.passwordSecret: env:TL_TEST_MYSQL_UNSET is not set/,
    );
    await expect(resolveAdminPassword(base(`file:${dir}/missing`), 'db', undefined)).rejects.toThrow(/passwordSecret: cannot read/);
    expect(await resolveAdminPassword(base(ARN), 'db', async (ref) => `resolved ${ref.slice(-6)}`)).toBe('resolved AbCdEf');
    expect(() => mysqlKind.create({ name: 'db', settings: base(ARN), access: {} }, {})).toThrow(
      /targets\.db\.settings\.passwordSecret needs a runtime with a secret resolver/,
    );
    expect(mysqlKind.create({ name: 'db', settings: base('env:X'), access: {} }, {}).kind).toBe('mysql');
  });
});

describe('what the kind needs in AWS', () => {
  it('GetSecretValue on the admin secret only, and the VPC when configured', () => {
    const vpc = { vpcId: 'vpc-0abc', subnetIds: ['subnet-0a', 'subnet-0b'], securityGroupIds: ['sg-0c'] };
    const t = target({ host: 'db.internal', user: 'tasklease', passwordSecret: `${ARN}#password`, vpc });
    expect(mysqlKind.aws.needs(t as never, ENV)).toEqual({
      statements: [{ sid: 'ReadMysqlAdminSecrets', actions: ['secretsmanager:GetSecretValue'], resources: [ARN], job: 'any' }],
      vpc,
    });
    const byName = mysqlKind.aws.needs(target({ host: 'h', user: 'u', passwordSecret: 'prod/mysql-admin' }) as never, ENV);
    expect(byName.statements[0]?.resources).toEqual(['arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/mysql-admin-??????']);
    expect(Object.keys(byName.statements[0]?.wildcardReasons ?? {})).toEqual(['arn:P:secretsmanager:R:A:secret:prod/mysql-admin-??????']);
    expect(byName.vpc).toBeUndefined();
  });

  it('refuses what cannot work in AWS, naming the field', () => {
    expect(() => mysqlKind.aws.needs(target({ host: 'h', user: 'u', password: 'inline' }) as never, ENV)).toThrow(
      /targets\.db\.settings\.password would be written into the CloudFormation template[\s\S]*use targets\.db\.settings\.passwordSecret/,
    );
    expect(() => mysqlKind.aws.needs(target({ host: 'h', user: 'u', passwordSecret: 'file:/etc/pw' }) as never, ENV)).toThrow(
      /targets\.db\.settings\.passwordSecret: 'file:' references work only outside AWS/,
    );
    expect(() => mysqlKind.aws.needs(target({ host: 'h', user: 'u', passwordSecret: 'env:PW' }) as never, ENV)).toThrow(
      /targets\.db\.settings\.passwordSecret: 'env:' references work only outside AWS/,
    );
  });
});
