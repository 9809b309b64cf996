import { afterAll, describe, expect, it } from 'vitest';
import { provideLocalTargets } from '../../local/targets.ts';
import { ConfigError } from '../../shared/lease/errors.ts';
import { validateTargets } from '../../shared/policy/config.ts';
import { buildTargetRegistry } from '../../shared/policy/registry.ts';
import type { ClosableTargetRegistry } from '../../shared/policy/registry.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import type { LocalTargets } from '../../local/targets.ts';
import { configWith } from './config-with.ts';
import { kvKind } from './kv-kind/index.ts';
import { settingsParses } from './kv-kind/settings.ts';

/*
 * Adding a target kind is one folder (here test/targets/kv-kind/, shaped like shared/targets/<kind>/)
 * plus one line in the kinds list: config validation, the registry and the local runtime's
 * provisioning take it without knowing its name. docs/architecture.md, "Adding a target kind".
 */
const KINDS = [...TARGET_KINDS, kvKind];

const ADMIN_REF = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:kv-admin-AbCdEf';
const cacheConfig = () =>
  configWith({
    cache: {
      kind: 'kv',
      settings: { endpoint: 'https://kv.internal/', adminTokenSecret: ADMIN_REF },
      access: { read: { scope: 'read' }, write: { scope: 'write' } },
      maxConcurrency: 8,
    },
  });
const config = cacheConfig();

let provided: LocalTargets | undefined;
let registry: ClosableTargetRegistry | undefined;
afterAll(async () => {
  await registry?.close();
  await provided?.stop();
});

describe('a kind that is one folder plus one registry line', () => {
  it('validateTargets applies its schemas and names its fields', () => {
    const [target] = validateTargets(config, KINDS);
    expect(target).toMatchObject({ name: 'cache', kind: 'kv', factory: kvKind, maxConcurrency: 8 });
    expect(target?.settings).toEqual({ endpoint: 'https://kv.internal/', adminTokenSecret: ADMIN_REF, tokenPrefix: 'tl-' });
    const bad = configWith({
      cache: { kind: 'kv', settings: { endpoint: 'nope', adminTokenSecret: ADMIN_REF }, access: { read: { scope: 'admin' } } },
    });
    expect(() => validateTargets(bad, KINDS)).toThrow(ConfigError);
    expect(() => validateTargets(bad, KINDS)).toThrow(
      /targets\.cache\.settings\.endpoint: must be the URL of the kv store[\s\S]*targets\.cache\.access\.read\.scope: /,
    );
    // Without its registry line the kind is unknown.
    expect(() => validateTargets(config, TARGET_KINDS)).toThrow(
      new RegExp(`targets\\.cache\\.kind: unknown target kind 'kv' \\(known: ${TARGET_KINDS.map((k) => k.kind).join(', ')}\\)`),
    );
  });

  it('declares its AWS needs and refuses config that cannot work in AWS', () => {
    const [target] = validateTargets(config, KINDS);
    const env = { partition: 'aws', region: 'eu-west-1', account: '123456789012', nag: { partition: 'p', region: 'r', account: 'a' } };
    expect(kvKind.aws.needs(target as never, env).statements).toEqual([
      { sid: 'ReadKvAdminToken', actions: ['secretsmanager:GetSecretValue'], resources: [ADMIN_REF], job: 'any' },
    ]);
    const [plain] = validateTargets(
      configWith({
        cache: {
          kind: 'kv',
          settings: { endpoint: 'http://kv.internal/', adminTokenSecret: ADMIN_REF },
          access: { read: { scope: 'read' } },
        },
      }),
      KINDS,
    );
    expect(() => kvKind.aws.needs(plain as never, env)).toThrow(/targets\.cache\.settings\.endpoint must use https:\/\//);
  });

  it('the local runtime provides it, the registry builds its driver with the provided settings, parsed once', async () => {
    const fresh = cacheConfig();
    const before = settingsParses.count;
    provided = await provideLocalTargets(fresh, KINDS, { busConcurrency: 4 });
    expect(provided.provisions.cache?.describe).toMatch(/^kv store on 127\.0\.0\.1:\d+$/);
    const endpoint = (provided.config.targets.cache?.settings as { endpoint: string }).endpoint;
    expect(endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(await provided.resolveSecret(ADMIN_REF)).toMatch(/^[\w-]{32}$/);

    registry = buildTargetRegistry(provided.config, KINDS, { resolveSecret: (ref) => provided!.resolveSecret(ref) });
    // One parse for provisioning and the registry together: the provided settings were not parsed again.
    expect(settingsParses.count).toBe(before + 1);
    const [entry] = registry.entries();
    expect(entry).toMatchObject({ name: 'cache', kind: 'kv', maxConcurrency: 8 });
    expect(registry.get('cache')).toBe(entry?.driver);

    // The driver works against what the local runtime started: a token is usable until revoked.
    const driver = entry!.driver;
    const grant = { target: 'cache', access: 'read' };
    const lease = { taskId: 'task-1', workload: 'spiffe://example.org/w', expiresAt: Date.now() + 60_000, durationSeconds: 60 };
    const externalId = driver.externalId(lease.taskId, grant);
    const cred = await driver.issue({ lease, grant, externalId });
    expect(cred.secret.endpoint).toBe(endpoint);
    const ref = { taskId: lease.taskId, grant, externalId, secret: cred.secret };
    expect(await driver.verify(ref)).toBe('still-valid');
    await driver.revoke(ref);
    expect(await driver.verify(ref)).toBe('rejected');
  });
});
