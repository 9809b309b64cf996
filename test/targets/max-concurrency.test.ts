import { describe, expect, it } from 'vitest';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import { configWith } from './config-with.ts';

/*
 * A target's maxConcurrency reaches its driver in every runtime (the registry passes it), so a
 * kind bounds its own admin work by it in AWS too, not only where the local runtime sizes it.
 * No server: building a driver opens no connection.
 */
const targets = {
  cache: {
    kind: 'redis',
    settings: { host: 'cache.internal', user: 'tasklease', password: 'local-only', adminConcurrency: 8 },
    access: { read: { keys: ['%R~orders:*'], commands: ['+@read'] } },
    maxConcurrency: 3,
  },
  queue: {
    kind: 'rabbitmq',
    settings: {
      managementUrl: 'http://mq.internal:15672',
      amqpUrl: 'amqp://mq.internal:5672',
      adminUser: 'admin',
      adminPassword: 'x',
      adminConcurrency: 6,
    },
    access: { send: { vhosts: { '/': { configure: '^$', write: '^orders$', read: '^$' } } } },
    maxConcurrency: 2,
  },
  orders: {
    kind: 'mysql',
    settings: { host: 'db.internal', user: 'tasklease_admin', password: 'local-only', adminPoolMax: 10 },
    access: { read: { grants: [{ privileges: ['SELECT'], on: 'orders.*' }] } },
    maxConcurrency: 4,
  },
  wide: {
    kind: 'redis',
    settings: { host: 'cache2.internal', user: 'tasklease', password: 'local-only', adminConcurrency: 4 },
    access: { read: { keys: ['%R~x:*'], commands: ['+@read'] } },
  },
};

describe('maxConcurrency reaches the driver', () => {
  it('caps the admin concurrency of the mysql, redis and rabbitmq drivers; without it the kind keeps its own', async () => {
    const registry = buildTargetRegistry(configWith(targets), TARGET_KINDS);
    try {
      const settingsOf = (name: string) => (registry.get(name) as unknown as { settings: { adminConcurrency: number } }).settings;
      expect(settingsOf('cache').adminConcurrency).toBe(3);
      expect(settingsOf('queue').adminConcurrency).toBe(2);
      expect(settingsOf('wide').adminConcurrency).toBe(4);
      expect((registry.get('orders') as unknown as { settings: { adminPoolMax: number } }).settings.adminPoolMax).toBe(4);
    } finally {
      await registry.close();
    }
  });
});
