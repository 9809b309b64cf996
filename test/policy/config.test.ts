import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError } from '../../shared/lease/errors.ts';
import { formatPath, loadConfig, parseConfig, TaskLeaseConfigSchema, validateTargets } from '../../shared/policy/config.ts';
import type { DriverFactory } from '../../shared/targets/driver.ts';
import { fakeFactory } from './fake-factory.ts';

const BASE = `
audience: tasklease
trustDomains:
  example.org:
    bundle: { file: ./bundle.json }
targets:
  orders-db:
    kind: fake
    settings: { endpoint: db.internal, port: 5432 }
    access:
      read: { level: ro }
      write: { level: rw }
rules:
  - id: etl-readers
    spiffeId: spiffe://example.org/etl/*
    grants: [orders-db.read]
    maxLeaseSeconds: 900
`;

/** The message of the ConfigError that `fn` throws. */
function configErrorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('config-error');
    return (err as ConfigError).message;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig: valid input', () => {
  it('parses YAML and fills defaults', () => {
    const config = parseConfig(BASE, 'base.yaml');
    expect(config.audience).toBe('tasklease');
    expect(config.clockSkewSeconds).toBe(30);
    expect(config.settings).toEqual({ verifyDeadlineSeconds: 30, reaperIntervalSeconds: 60, openDebtObjectiveSeconds: 300 });
    expect(config.trustDomains['example.org']?.bundle).toEqual({ file: './bundle.json' });
    expect(config.rules[0]).toEqual({
      id: 'etl-readers',
      spiffeId: 'spiffe://example.org/etl/*',
      grants: ['orders-db.read'],
      maxLeaseSeconds: 900,
    });
  });

  it('parses the same config written as JSON to the same value', () => {
    const fromYaml = parseConfig(BASE, 'base.yaml');
    const fromJson = parseConfig(JSON.stringify(TaskLeaseConfigSchema.parse(fromYaml), null, 2), 'base.json');
    expect(fromJson).toEqual(fromYaml);
  });

  it('accepts every bundle source and federation of several trust domains', () => {
    const config = parseConfig(
      `
audience: a
trustDomains:
  a.example: { bundle: { file: /etc/bundle.json }, refreshHintSeconds: 120 }
  b.example: { bundle: { url: "https://spiffe.b.example/bundle" } }
  c.example: { bundle: { ssmParameter: /tasklease/bundle }, requireJti: false }
  d.example: { bundle: { local: true } }
  e.example: { bundle: { url: "http://127.0.0.1:8081/bundle" } }
targets: {}
rules: []
`,
      'fed.yaml',
    );
    expect(Object.keys(config.trustDomains)).toEqual(['a.example', 'b.example', 'c.example', 'd.example', 'e.example']);
    // requireJti defaults on: an SVID without a jti would have no replay key of its own.
    expect(config.trustDomains['a.example']).toEqual({ bundle: { file: '/etc/bundle.json' }, refreshHintSeconds: 120, requireJti: true });
    expect(config.trustDomains['c.example']?.bundle).toEqual({ ssmParameter: '/tasklease/bundle' });
    expect(config.trustDomains['c.example']?.requireJti).toBe(false); // SPIRE mints JWT-SVIDs without jti
    expect(config.trustDomains['d.example']?.bundle).toEqual({ local: true });
  });

  it('keeps optional rule fields', () => {
    const config = parseConfig(
      BASE.replace(
        'maxLeaseSeconds: 900',
        'maxLeaseSeconds: 900\n    initiators: [alice@example.org]\n    awsPrincipal: arn:aws:iam::123456789012:role/etl',
      ),
      'x.yaml',
    );
    expect(config.rules[0]?.initiators).toEqual(['alice@example.org']);
    expect(config.rules[0]?.awsPrincipal).toBe('arn:aws:iam::123456789012:role/etl');
  });
});

describe('parseConfig: errors name the field', () => {
  it('bad YAML syntax names the line', () => {
    const msg = configErrorOf(() => parseConfig('audience: tasklease\ntargets:\n  orders-db: [unclosed\nrules: []\n', 'broken.yaml'));
    expect(msg).toContain('broken.yaml');
    expect(msg).toMatch(/line \d+, column \d+: YAML syntax error/);
  });

  it('a duplicate key is a syntax error with its line', () => {
    const msg = configErrorOf(() => parseConfig('audience: a\naudience: b\n', 'dup.yaml'));
    expect(msg).toContain('line 2, column 1: YAML syntax error: Map keys must be unique');
  });

  it('a syntax error does not echo the file contents', () => {
    const msg = configErrorOf(() => parseConfig('audience: tasklease\nsettings: { token: s3cr3t-value\n', 's.yaml'));
    expect(msg).not.toContain('s3cr3t-value');
  });

  it('missing audience', () => {
    const msg = configErrorOf(() => parseConfig(BASE.replace('audience: tasklease\n', ''), 'x.yaml'));
    expect(msg).toMatch(/^\s+audience: is required$/m);
  });

  it('an empty file names every required field', () => {
    const msg = configErrorOf(() => parseConfig('', 'empty.yaml'));
    for (const field of ['audience', 'trustDomains', 'targets', 'rules']) expect(msg).toContain(`${field}: is required`);
  });

  it('a bad SPIFFE ID pattern names rules[i].spiffeId and its line', () => {
    const text = `${BASE}
  - id: second
    spiffeId: spiffe://example.org/etl/x
    grants: [orders-db.read]
    maxLeaseSeconds: 900
  - id: third
    spiffeId: https://example.org/etl/*
    grants: [orders-db.read]
    maxLeaseSeconds: 900
`;
    const msg = configErrorOf(() => parseConfig(text, 'x.yaml'));
    const line = text.split('\n').findIndex((l) => l.includes('https://example.org')) + 1;
    expect(msg).toContain(`rules[2].spiffeId: must be a SPIFFE ID pattern`);
    expect(msg).toContain(`(line ${line})`);
  });

  it.each([
    ['spiffe://example.org', 'names the trust domain, not a workload'],
    ['spiffe://example.org/', '(rule: path-trailing-slash)'],
    ['spiffe://example.org/a//b', '(rule: path-empty-segment)'],
    ['spiffe://example.org/a/', '(rule: path-trailing-slash)'],
    ['spiffe://example.org/a*', '"*" is allowed only as the whole last segment'],
    ['spiffe://example.org/*/b', '"*" is allowed only as the whole last segment'],
    ['spiffe://example.org/a/../b', '(rule: path-dot-segment)'],
    ['spiffe://Example.org/a', '(rule: trust-domain-case)'],
    ['spiffe://example.org:8443/a', '(rule: port)'],
    ['spiffe://user@example.org/a', '(rule: userinfo)'],
    ['spiffe://example.org/a?x=1', '(rule: query)'],
    ['spiffe://example.org/a%20b', '(rule: percent-encoding)'],
    ['spiffe://example.org/a b/*', 'without its "/*"'],
    ['spiffe:///a', '(rule: trust-domain-missing)'],
    ['https://example.org/etl/*', '(rule: scheme)'],
  ])('pattern %s is rejected (%s)', (pattern, why) => {
    const msg = configErrorOf(() => parseConfig(BASE.replace('spiffe://example.org/etl/*', pattern), 'x.yaml'));
    expect(msg).toContain('rules[0].spiffeId: ');
    expect(msg).toContain(why);
  });

  it('a pattern in a trust domain that is not configured', () => {
    const msg = configErrorOf(() => parseConfig(BASE.replace('spiffe://example.org/etl/*', 'spiffe://other.org/etl/*'), 'x.yaml'));
    expect(msg).toContain("rules[0].spiffeId: trust domain 'other.org' is not configured in trustDomains (configured: example.org)");
  });

  it('a grant naming an unknown target', () => {
    const msg = configErrorOf(() =>
      parseConfig(BASE.replace('grants: [orders-db.read]', 'grants: [orders-db.read, billing-db.read]'), 'x.yaml'),
    );
    expect(msg).toContain("rules[0].grants[1]: target 'billing-db' is not defined in targets (defined: orders-db)");
  });

  it('a grant naming an unknown access level', () => {
    const msg = configErrorOf(() => parseConfig(BASE.replace('grants: [orders-db.read]', 'grants: [orders-db.admin]'), 'x.yaml'));
    expect(msg).toContain("rules[0].grants[0]: target 'orders-db' has no access level 'admin' (defined: read, write)");
  });

  it('a grant that is not "<target>.<access>"', () => {
    const msg = configErrorOf(() => parseConfig(BASE.replace('grants: [orders-db.read]', 'grants: [orders-db]'), 'x.yaml'));
    expect(msg).toContain('rules[0].grants[0]: must be "<target>.<access>"');
  });

  it('a duplicate rule id', () => {
    const text = `${BASE}
  - id: etl-readers
    spiffeId: spiffe://example.org/reports/*
    grants: [orders-db.read]
    maxLeaseSeconds: 600
`;
    const msg = configErrorOf(() => parseConfig(text, 'x.yaml'));
    expect(msg).toContain("rules[1].id: duplicate rule id 'etl-readers' (also rules[0])");
  });

  it('two rules with the same pattern', () => {
    const text = `${BASE}
  - id: etl-writers
    spiffeId: spiffe://example.org/etl/*
    grants: [orders-db.write]
    maxLeaseSeconds: 600
`;
    const msg = configErrorOf(() => parseConfig(text, 'x.yaml'));
    expect(msg).toContain("rules[1].spiffeId: same pattern as rule 'etl-readers' (rules[0]); merge the two rules");
  });

  it('an unknown field is reported at its own path', () => {
    const msg = configErrorOf(() => parseConfig(BASE.replace('maxLeaseSeconds: 900', 'maxLeaseSecs: 900'), 'x.yaml'));
    expect(msg).toContain('rules[0].maxLeaseSecs: unknown field');
    expect(msg).toContain('rules[0].maxLeaseSeconds: is required');
  });

  it('maxLeaseSeconds out of bounds, empty initiators, bad awsPrincipal', () => {
    const msg = configErrorOf(() =>
      parseConfig(BASE.replace('maxLeaseSeconds: 900', 'maxLeaseSeconds: 10\n    initiators: []\n    awsPrincipal: etl-role'), 'x.yaml'),
    );
    expect(msg).toContain('rules[0].maxLeaseSeconds: must be at least 60 seconds');
    expect(msg).toContain('rules[0].initiators: must not be empty: remove the field to allow any initiator');
    expect(msg).toContain('rules[0].awsPrincipal: must be an IAM principal ARN');
  });

  it('bundle sources: none, several, plain http to a remote host', () => {
    const msg = configErrorOf(() =>
      parseConfig(
        `
audience: a
trustDomains:
  a.example: { bundle: {} }
  b.example: { bundle: { file: x.json, local: true } }
  c.example: { bundle: { url: "http://bundle.c.example/" } }
  Bad_TD: { bundle: { local: true } }
targets: {}
rules: []
`,
        'x.yaml',
      ),
    );
    expect(msg).toContain('trustDomains["a.example"].bundle: must set exactly one of file, url, ssmParameter or local (line 4)');
    expect(msg).toContain(
      'trustDomains["b.example"].bundle: must set exactly one of file, url, ssmParameter or local (found file and local)',
    );
    expect(msg).toContain('trustDomains["c.example"].bundle.url: must use https://');
    expect(msg).toContain('trustDomains.Bad_TD: key must be a trust domain name: "Bad_TD" is not a valid trust domain');
  });

  it('no trust domain at all', () => {
    const msg = configErrorOf(() => parseConfig('audience: a\ntrustDomains: {}\ntargets: {}\nrules: []\n', 'x.yaml'));
    expect(msg).toContain('trustDomains: must name at least one trust domain');
  });

  it('bad target and access names, and a target without access levels', () => {
    const msg = configErrorOf(() =>
      parseConfig(
        `
audience: a
trustDomains: { example.org: { bundle: { local: true } } }
targets:
  Orders_DB: { kind: fake, settings: {}, access: { read: {} } }
  empty: { kind: fake, settings: {}, access: {} }
  ok: { kind: fake, settings: {}, access: { Read-All: {} } }
rules: []
`,
        'x.yaml',
      ),
    );
    expect(msg).toContain('targets.Orders_DB: key is not a valid target name');
    expect(msg).toContain('targets.empty.access: must define at least one access level');
    expect(msg).toContain('targets.ok.access.Read-All: key is not a valid access name');
  });

  it('lists every problem at once, in file order', () => {
    const msg = configErrorOf(() =>
      parseConfig(
        BASE.replace('clockSkewSeconds', 'x')
          .replace('grants: [orders-db.read]', 'grants: [nope.read]')
          .replace('audience: tasklease', 'audience: 5'),
        'x.yaml',
      ),
    );
    const lines = msg.split('\n').slice(1);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^ {2}audience: .*\(line 2\)$/);
    expect(lines[1]).toMatch(/^ {2}rules\[0\]\.grants\[0\]: target 'nope'/);
  });
});

describe('validateTargets: driver settings against their factory', () => {
  const factories = [fakeFactory()];

  it('returns the targets with settings and access as the driver schemas output them', () => {
    const config = parseConfig(
      BASE.replace('settings: { endpoint: db.internal, port: 5432 }', 'settings: { endpoint: db.internal }'),
      'x.yaml',
    );
    const [target] = validateTargets(config, factories);
    expect(target).toMatchObject({ name: 'orders-db', kind: 'fake', settings: { endpoint: 'db.internal', port: 7000 } });
    expect(target?.access).toEqual({ read: { level: 'ro' }, write: { level: 'rw' } });
  });

  it('accepts factories as an array, a Map or a record', () => {
    const config = parseConfig(BASE, 'x.yaml');
    const f = fakeFactory();
    for (const form of [[f], new Map([['fake', f]]), { fake: f }]) expect(validateTargets(config, form)).toHaveLength(1);
  });

  it('an unknown kind', () => {
    const config = parseConfig(BASE.replace('kind: fake', 'kind: mongo'), 'x.yaml');
    const msg = configErrorOf(() => validateTargets(config, factories));
    expect(msg).toMatch(/targets\.orders-db\.kind: unknown target kind 'mongo' \(known: fake\) \(line \d+\)/);
  });

  it('bad driver settings name the nested field and its line', () => {
    const text = BASE.replace('port: 5432', 'port: 99999');
    const config = parseConfig(text, 'cfg.yaml');
    const msg = configErrorOf(() => validateTargets(config, factories));
    const line = text.split('\n').findIndex((l) => l.includes('99999')) + 1;
    expect(msg).toContain('invalid tasklease config cfg.yaml');
    expect(msg).toMatch(new RegExp(`targets\\.orders-db\\.settings\\.port: .*65535.* \\(line ${line}\\)`));
  });

  it('missing and unknown driver settings', () => {
    const config = parseConfig(
      BASE.replace('settings: { endpoint: db.internal, port: 5432 }', 'settings: { host: db.internal }'),
      'x.yaml',
    );
    const msg = configErrorOf(() => validateTargets(config, factories));
    expect(msg).toContain('targets.orders-db.settings.endpoint: is required');
    expect(msg).toContain('targets.orders-db.settings.host: unknown field');
  });

  it('bad access level values', () => {
    const config = parseConfig(BASE.replace('write: { level: rw }', 'write: { level: admin }'), 'x.yaml');
    const msg = configErrorOf(() => validateTargets(config, factories));
    expect(msg).toMatch(/targets\.orders-db\.access\.write\.level: .*"ro".*"rw"/);
  });

  it('works on a config built in memory (no source lines)', () => {
    const config = TaskLeaseConfigSchema.parse({
      audience: 'a',
      trustDomains: { 'example.org': { bundle: { local: true } } },
      targets: { 'orders-db': { kind: 'fake', settings: { endpoint: 1 }, access: { read: { level: 'ro' } } } },
      rules: [],
    });
    const msg = configErrorOf(() => validateTargets(config, factories));
    expect(msg).toMatch(/^invalid tasklease config \(in memory\):\n {2}targets\.orders-db\.settings\.endpoint: [^\n]*string[^\n]*$/);
  });
});

describe('loadConfig', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tasklease-policy-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads YAML and JSON files alike and resolves bundle files against the config directory', async () => {
    const yamlPath = join(dir, 'tasklease.config.yaml');
    const jsonPath = join(dir, 'tasklease.config.json');
    await writeFile(yamlPath, BASE);
    await writeFile(jsonPath, JSON.stringify(parseConfig(BASE, 'base.yaml')));
    const fromYaml = await loadConfig(yamlPath);
    const fromJson = await loadConfig(jsonPath);
    expect(fromJson).toEqual(fromYaml);
    expect(fromYaml.trustDomains['example.org']?.bundle).toEqual({ file: join(dir, 'bundle.json') });
  });

  it('runs the driver pass when factories are given', async () => {
    const path = join(dir, 'bad-kind.yaml');
    await writeFile(path, BASE.replace('kind: fake', 'kind: nosuch'));
    await expect(loadConfig(path)).resolves.toBeDefined();
    await expect(loadConfig(path, { factories: [fakeFactory()] })).rejects.toThrow(
      /targets\.orders-db\.kind: unknown target kind 'nosuch'/,
    );
  });

  it('a missing file is a ConfigError naming the path', async () => {
    const path = join(dir, 'nope.yaml');
    await expect(loadConfig(path)).rejects.toThrow(ConfigError);
    await expect(loadConfig(path)).rejects.toThrow(`cannot read tasklease config ${path}: ENOENT`);
  });
});

describe('the demo config (tasklease.config.yaml)', () => {
  const demoPath = new URL('../../tasklease.config.yaml', import.meta.url).pathname;

  // The real postgres factory is another module; a stand-in with the demo's settings shape
  // checks that the file is complete and consistent without depending on it.
  const postgresLike: DriverFactory = {
    kind: 'postgres',
    settingsSchema: z.strictObject({
      host: z.string(),
      port: z.number().int(),
      database: z.string(),
      user: z.string(),
      passwordSecret: z.string(),
    }),
    accessSchema: z.strictObject({ groupRole: z.string() }),
    services: [],
    create: () => {
      throw new Error('not used');
    },
  };

  it('parses and validates', async () => {
    const config = await loadConfig(demoPath, { factories: [postgresLike] });
    expect(config.audience).toBe('tasklease');
    expect(config.trustDomains['demo.tasklease.local']?.bundle).toEqual({ local: true });
    expect(config.targets['orders-db']?.access).toEqual({ read: { groupRole: 'orders_read' }, write: { groupRole: 'orders_write' } });
    expect(config.rules.map((r) => [r.spiffeId, r.grants, r.maxLeaseSeconds])).toEqual([
      ['spiffe://demo.tasklease.local/etl/*', ['orders-db.read'], 900],
      ['spiffe://demo.tasklease.local/billing/writer', ['orders-db.read', 'orders-db.write'], 900],
    ]);
  });
});

describe('formatPath', () => {
  it('writes paths the way a person reads them', () => {
    expect(formatPath(['rules', 2, 'spiffeId'])).toBe('rules[2].spiffeId');
    expect(formatPath(['targets', 'orders-db', 'settings', 'port'])).toBe('targets.orders-db.settings.port');
    expect(formatPath(['trustDomains', 'example.org', 'bundle'])).toBe('trustDomains["example.org"].bundle');
    expect(formatPath([])).toBe('(top level)');
  });
});
