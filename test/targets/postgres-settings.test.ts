import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/lease/errors.ts';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import { postgresDriverFactory } from '../../shared/targets/postgres/driver.ts';
import { roleNameFor } from '../../shared/targets/postgres/names.ts';
import { scramSha256Verifier } from '../../shared/targets/postgres/scram.ts';
import { PostgresAccessSchema, PostgresSettingsSchema, parsePostgresSettings } from '../../shared/targets/postgres/settings.ts';
import { configWith } from './config-with.ts';

const base = { host: 'db.example', port: 5432, database: 'orders', user: 'tasklease_admin', password: 'admin-pw' };

function issuesOf(value: unknown): string[] {
  const r = PostgresSettingsSchema.safeParse(value);
  return r.success ? [] : r.error.issues.map((i) => i.path.join('.'));
}

describe('postgres settings', () => {
  it('applies defaults', () => {
    const s = parsePostgresSettings({ host: 'h', database: 'd', user: 'u', passwordSecret: 'arn:aws:secretsmanager:x' });
    expect(s).toMatchObject({ port: 5432, rolePrefix: 'tl_', adminPoolMax: 4, connectTimeoutMs: 5000 });
    expect(s.ssl).toBeUndefined();
  });

  it.each([
    [{ ...base, host: '' }, 'host'],
    [{ ...base, host: 'a\nb' }, 'host'],
    [{ ...base, port: 0 }, 'port'],
    [{ ...base, port: '5432' }, 'port'],
    [{ ...base, port: 70000 }, 'port'],
    [{ ...base, database: undefined }, 'database'],
    [{ ...base, user: 'x'.repeat(64) }, 'user'],
    [{ ...base, ssl: 'prefer' }, 'ssl'],
    [{ ...base, ssl: true }, 'ssl'],
    [{ ...base, rolePrefix: 'pg_' }, 'rolePrefix'],
    [{ ...base, rolePrefix: 'Tl-' }, 'rolePrefix'],
    [{ ...base, rolePrefix: 'x'.repeat(32) }, 'rolePrefix'],
    [{ ...base, adminPoolMax: 0 }, 'adminPoolMax'],
    [{ ...base, connectTimeoutMs: 1.5 }, 'connectTimeoutMs'],
    [{ ...base, reassignOwnedTo: 'a"b' }, 'reassignOwnedTo'],
    [{ ...base, unknownField: 1 }, ''],
    [{ ...base, password: undefined }, 'password'],
    [{ ...base, passwordSecret: 'arn:x' }, 'password'],
  ])('rejects %j naming the field', (value, field) => {
    expect(issuesOf(value)).toContain(field);
    let message = '';
    try {
      parsePostgresSettings(value);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain(field || 'unknownField');
  });

  it('accepts ssl modes', () => {
    for (const ssl of ['require', 'verify-full', false] as const) {
      expect(parsePostgresSettings({ ...base, ssl }).ssl).toBe(ssl);
    }
  });

  // Moved from the factory: create() takes settings validateTargets already parsed, so the
  // registry's validation is where a bad field is named.
  it('validation names the target and the field; the admin password is not in the message', () => {
    expect(() =>
      buildTargetRegistry(
        configWith({ 'orders-db': { kind: 'postgres', settings: { ...base, port: -1 }, access: { read: { groupRole: 'orders_read' } } } }),
        TARGET_KINDS,
      ),
    ).toThrow(/targets\.orders-db\.settings\.port: /);
    const msg = (() => {
      try {
        buildTargetRegistry(
          configWith({ 'orders-db': { kind: 'postgres', settings: base, access: { read: { groupRole: 'x"; DROP' } } } }),
          TARGET_KINDS,
        );
      } catch (err) {
        return (err as Error).message;
      }
      return '';
    })();
    expect(msg).toMatch(/targets\.orders-db\.access\.read\.groupRole: /);
    expect(msg).not.toContain(base.password);
  });

  it('passwordSecret needs a resolver', () => {
    expect(() =>
      postgresDriverFactory.create(
        { name: 'db', settings: parsePostgresSettings({ ...base, password: undefined, passwordSecret: 'ref' }), access: {} },
        {},
      ),
    ).toThrow(ConfigError);
  });
});

describe('postgres access', () => {
  it('accepts identifiers and rejects anything that would need quoting', () => {
    expect(PostgresAccessSchema.parse({ groupRole: 'orders_read' })).toEqual({ groupRole: 'orders_read' });
    expect(PostgresAccessSchema.parse({ groupRole: 'pg_read_all_data' }).groupRole).toBe('pg_read_all_data');
    for (const bad of ["orders'read", 'orders"read', 'a;b', 'a b', '1abc', '', 'x'.repeat(64), 'rôle', 'a\\b']) {
      const r = PostgresAccessSchema.safeParse({ groupRole: bad });
      expect(r.success, bad).toBe(false);
      if (!r.success) expect(r.error.issues[0]?.path).toEqual(['groupRole']);
    }
    expect(PostgresAccessSchema.safeParse({ groupRole: 'a', extra: 1 }).success).toBe(false);
  });
});

describe('externalId', () => {
  const driver = postgresDriverFactory.create({ name: 'db', settings: parsePostgresSettings(base), access: {} }, {});
  const grant = { target: 'orders-db', access: 'read' };
  afterAll(() => driver.close?.());

  it('is deterministic, prefix + 40 hex, distinct per task and grant', () => {
    const a = driver.externalId('task-1', grant);
    expect(a).toMatch(/^tl_[0-9a-f]{40}$/);
    expect(driver.externalId('task-1', grant)).toBe(a);
    expect(driver.externalId('task-2', grant)).not.toBe(a);
    expect(driver.externalId('task-1', { ...grant, access: 'write' })).not.toBe(a);
    expect(driver.externalId('task-1', { ...grant, target: 'other' })).not.toBe(a);
  });

  it('never carries task text, whatever the input', () => {
    const hostile = [
      "'; DROP ROLE postgres; --",
      '"; DROP TABLE orders; --',
      'a\\b\\\\c',
      'ünïcødé ☃ 𝕏',
      '\u0000\u0001\n\r\t',
      'x'.repeat(10_240),
    ];
    for (const taskId of hostile) {
      const id = driver.externalId(taskId, { target: taskId, access: taskId });
      expect(id).toMatch(/^tl_[0-9a-f]{40}$/);
    }
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 2000 }), fc.string(), (taskId, access) => {
        const id = driver.externalId(taskId, { target: 'orders-db', access });
        return /^tl_[0-9a-f]{40}$/.test(id) && id.length <= 63;
      }),
    );
  });

  it('keeps total length within 63 for the longest prefix', () => {
    const prefix = 'a'.repeat(31);
    const id = roleNameFor(prefix, 't', grant);
    expect(id.length).toBe(63);
    expect(id.slice(31)).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('scram verifier', () => {
  it('has PostgreSQL storage format and never contains the password', async () => {
    const v = await scramSha256Verifier('correct horse battery staple');
    expect(v).toMatch(/^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/);
    expect(v).not.toContain('correct horse');
    expect(await scramSha256Verifier('correct horse battery staple')).not.toBe(v); // fresh salt
  });
});
