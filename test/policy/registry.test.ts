import { describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../shared/lease/errors.ts';
import { parseConfig, validateTargets } from '../../shared/policy/config.ts';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import type { DriverFactory, DriverServices } from '../../shared/targets/driver.ts';
import { fakeFactory, FakeSettingsSchema } from './fake-factory.ts';

const CONFIG = `
audience: tasklease
trustDomains: { example.org: { bundle: { local: true } } }
targets:
  orders-db:
    kind: fake
    settings: { endpoint: orders.internal }
    access: { read: { level: ro }, write: { level: rw } }
  cache:
    kind: other
    settings: { endpoint: cache.internal, port: 6379 }
    access: { read: { level: ro } }
rules: []
`;

describe('buildTargetRegistry', () => {
  it('creates one driver per target through the factory of its kind, with validated settings and the deps', async () => {
    const fake = fakeFactory('fake');
    const other = fakeFactory('other');
    const resolveSecret = async (ref: string) => `resolved:${ref}`;
    const lock: NonNullable<DriverServices['lock']> = (_name, _ttl, fn) => fn();
    const registry = buildTargetRegistry(parseConfig(CONFIG, 'x.yaml'), [fake, other], { resolveSecret, lock });

    expect(registry.names()).toEqual(['orders-db', 'cache']);
    expect(registry.all()).toHaveLength(2);
    expect(fake.built).toHaveLength(1);
    expect(other.built).toHaveLength(1);

    const orders = fake.built[0]!;
    expect(registry.get('orders-db')).toBe(orders);
    expect(registry.get('cache')).toBe(other.built[0]);
    expect(registry.get('nope')).toBeUndefined();
    // Defaults of the driver's schema were applied before create().
    expect(orders.created).toEqual({
      name: 'orders-db',
      settings: { endpoint: 'orders.internal', port: 7000 },
      access: { read: { level: 'ro' }, write: { level: 'rw' } },
    });
    expect(orders.deps.resolveSecret).toBe(resolveSecret);
    // Only the services the factory declares: the fake kind reads resolveSecret, not the lock.
    expect(Object.keys(orders.deps)).toEqual(['resolveSecret']);

    await registry.close();
    expect(fake.built[0]!.closed).toBe(true);
    expect(other.built[0]!.closed).toBe(true);
  });

  it('lists its entries: configured name, kind, driver and concurrency bound, in config order', () => {
    const fake = fakeFactory('fake');
    const other = fakeFactory('other');
    const config = parseConfig(
      CONFIG.replace('access: { read: { level: ro } }', 'access: { read: { level: ro } }\n    maxConcurrency: 3'),
      'x.yaml',
    );
    const registry = buildTargetRegistry(config, [fake, other]);
    expect(registry.entries()).toEqual([
      { name: 'orders-db', kind: 'fake', driver: fake.built[0] },
      { name: 'cache', kind: 'other', driver: other.built[0], maxConcurrency: 3 },
    ]);
  });

  it('a config validated once is not parsed again for the registry', () => {
    const fake = fakeFactory('fake');
    const other = fakeFactory('other');
    const factories = [fake, other];
    const config = parseConfig(CONFIG, 'x.yaml');
    const validated = validateTargets(config, factories);
    const parse = vi.spyOn(FakeSettingsSchema, 'safeParse');
    try {
      buildTargetRegistry(config, factories);
      expect(parse).not.toHaveBeenCalled();
      // The drivers got the very settings objects validateTargets output.
      expect(fake.built[0]!.created.settings).toBe(validated[0]!.settings);
    } finally {
      parse.mockRestore();
    }
  });

  it('fails before creating anything when a target is invalid', () => {
    const fake = fakeFactory('fake');
    expect(() => buildTargetRegistry(parseConfig(CONFIG, 'x.yaml'), [fake], {})).toThrow(ConfigError);
    expect(() => buildTargetRegistry(parseConfig(CONFIG, 'x.yaml'), [fake], {})).toThrow(
      /targets\.cache\.kind: unknown target kind 'other'/,
    );
    expect(fake.built).toHaveLength(0);
  });

  it('rejects a factory that builds a driver of another kind', () => {
    const base = fakeFactory('fake');
    const liar: DriverFactory = { ...base, kind: 'other', create: (t, d) => base.create(t as never, d) };
    expect(() => buildTargetRegistry(parseConfig(CONFIG, 'x.yaml'), [base, liar])).toThrow(
      /targets\.cache\.kind: factory for 'other' built a 'fake' driver/,
    );
  });
});
