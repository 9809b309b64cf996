import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SpiffeIdError, isSpiffeId, parseSpiffeId, parseTrustDomain } from '../../shared/identity/spiffe-id.ts';
import type { SpiffeIdRule } from '../../shared/identity/spiffe-id.ts';
import { TaskLeaseError } from '../../shared/lease/errors.ts';

const td255 = 'a'.repeat(251) + '.org'; // exactly 255 bytes
const exactly2048 = 'spiffe://example.org/' + 'a'.repeat(2048 - 'spiffe://example.org/'.length);

const valid: Array<[string, string, string]> = [
  ['spiffe://example.org', 'example.org', ''],
  ['spiffe://example.org/workload', 'example.org', '/workload'],
  ['spiffe://staging.example.com/payments/web-fe', 'staging.example.com', '/payments/web-fe'],
  ['spiffe://k8s-west.example.com/ns/staging/sa/default', 'k8s-west.example.com', '/ns/staging/sa/default'],
  ['spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453', 'example.com', '/9eebccd2-12bf-40a6-b262-65fe0487d453'],
  ['spiffe://trust_domain-name.example.com/Path/With/UPPER_case', 'trust_domain-name.example.com', '/Path/With/UPPER_case'],
  ['spiffe://1.2.3.4/dotted-quad', '1.2.3.4', '/dotted-quad'], // IPv4 is just another name (§2.1)
  ['spiffe://td/.../a..b/.hidden/x.', 'td', '/.../a..b/.hidden/x.'], // only `.` and `..` are relative modifiers
  [`spiffe://${td255}/x`, td255, '/x'],
  [exactly2048, 'example.org', exactly2048.slice('spiffe://example.org'.length)],
];

const invalid: Array<[string, SpiffeIdRule]> = [
  ['', 'empty'],
  ['http://example.org/x', 'scheme'],
  ['SPIFFE://example.org/x', 'scheme'],
  ['Spiffe://example.org', 'scheme'],
  ['spiffe:/example.org/x', 'scheme'],
  ['spiffe:example.org', 'scheme'],
  ['example.org/x', 'scheme'],
  [' spiffe://example.org', 'scheme'],
  ['spiffe://', 'trust-domain-missing'],
  ['spiffe:///path', 'trust-domain-missing'],
  ['spiffe://user@example.org/x', 'userinfo'],
  ['spiffe://user:pw@example.org', 'userinfo'],
  ['spiffe://@example.org', 'userinfo'],
  ['spiffe://example.org:8080/x', 'port'],
  ['spiffe://example.org:/x', 'port'],
  ['spiffe://[::1]/x', 'trust-domain-chars'],
  ['spiffe://Example.org/x', 'trust-domain-case'],
  ['spiffe://EXAMPLE.ORG', 'trust-domain-case'],
  ['spiffe://exa mple.org', 'trust-domain-chars'],
  ['spiffe://exämple.org', 'trust-domain-chars'],
  ['spiffe://example.org\\x', 'trust-domain-chars'],
  ['spiffe://example.org\n', 'trust-domain-chars'],
  ['spiffe://ex%41mple.org', 'percent-encoding'],
  ['spiffe://example.org/a%20b', 'percent-encoding'],
  ['spiffe://example.org/%2e%2e', 'percent-encoding'],
  [`spiffe://a${td255}`, 'trust-domain-length'],
  ['spiffe://example.org/x?y=1', 'query'],
  ['spiffe://example.org?x', 'query'],
  ['spiffe://example.org/x?', 'query'],
  ['spiffe://example.org/x#frag', 'fragment'],
  ['spiffe://example.org#', 'fragment'],
  ['spiffe://example.org/x#a?b', 'fragment'],
  ['spiffe://example.org/', 'path-trailing-slash'],
  ['spiffe://example.org/a/', 'path-trailing-slash'],
  ['spiffe://example.org//a', 'path-empty-segment'],
  ['spiffe://example.org/a//b', 'path-empty-segment'],
  ['spiffe://example.org/.', 'path-dot-segment'],
  ['spiffe://example.org/./a', 'path-dot-segment'],
  ['spiffe://example.org/a/..', 'path-dot-segment'],
  ['spiffe://example.org/../etc', 'path-dot-segment'],
  ['spiffe://example.org/a b', 'path-chars'],
  ['spiffe://example.org/a+b', 'path-chars'],
  ['spiffe://example.org/a@b', 'path-chars'],
  ['spiffe://example.org/a:b', 'path-chars'],
  ['spiffe://example.org/a\\b', 'path-chars'],
  ['spiffe://example.org/é', 'path-chars'],
  ['spiffe://example.org/a~b', 'path-chars'],
  [exactly2048 + 'a', 'max-length'],
  // 2047 characters, 2049 bytes: the limit is in bytes.
  [exactly2048.slice(0, -1) + 'é', 'max-length'],
];

const ALL_RULES: SpiffeIdRule[] = [
  'not-a-string',
  'empty',
  'max-length',
  'scheme',
  'query',
  'fragment',
  'trust-domain-missing',
  'userinfo',
  'port',
  'percent-encoding',
  'trust-domain-case',
  'trust-domain-chars',
  'trust-domain-length',
  'path-empty-segment',
  'path-dot-segment',
  'path-trailing-slash',
  'path-chars',
];

function ruleOf(input: unknown): SpiffeIdRule {
  try {
    parseSpiffeId(input as string);
  } catch (err) {
    expect(err).toBeInstanceOf(SpiffeIdError);
    return (err as SpiffeIdError).rule;
  }
  throw new Error(`accepted ${JSON.stringify(input)}`);
}

describe('parseSpiffeId', () => {
  it.each(valid.map((v) => [v[0].length > 60 ? `${v[0].slice(0, 60)}…(${v[0].length})` : v[0], ...v] as const))(
    'accepts %s',
    (_label, input, trustDomain, path) => {
      const id = parseSpiffeId(input);
      expect(id.trustDomain).toBe(trustDomain);
      expect(id.path).toBe(path);
      expect(id.toString()).toBe(input);
      expect(JSON.stringify({ id })).toBe(JSON.stringify({ id: input }));
      expect(isSpiffeId(input)).toBe(true);
    },
  );

  const short = (s: string) => (s.length > 60 ? `${s.slice(0, 60)}…(${s.length})` : s);
  it.each(invalid.map(([input, rule]) => [short(input), rule, input] as const))('rejects %j by rule %s', (_label, rule, input) => {
    expect(ruleOf(input)).toBe(rule);
    expect(isSpiffeId(input)).toBe(false);
  });

  it('rejects a value that is not a string', () => {
    expect(ruleOf(42)).toBe('not-a-string');
    expect(ruleOf(undefined)).toBe('not-a-string');
    expect(isSpiffeId(42)).toBe(false);
  });

  it('covers every rule in the table', () => {
    const covered = new Set<SpiffeIdRule>([...invalid.map(([, r]) => r), 'not-a-string']);
    expect([...covered].sort()).toEqual([...ALL_RULES].sort());
  });

  it('errors are TaskLeaseErrors with a stable code, naming the rule and a bounded quote of the input', () => {
    const long = 'spiffe://example.org/' + 'x'.repeat(500) + '?q';
    try {
      parseSpiffeId(long);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TaskLeaseError);
      expect((err as SpiffeIdError).code).toBe('spiffe-id-invalid');
      expect((err as Error).message).toContain('(rule: query)');
      expect((err as Error).message.length).toBeLessThan(250);
    }
  });

  it('is immutable', () => {
    const id = parseSpiffeId('spiffe://example.org/a');
    expect(() => {
      (id as { path: string }).path = '/b';
    }).toThrow(TypeError);
  });
});

describe('parseTrustDomain', () => {
  it('accepts a bare name and rejects by rule', () => {
    expect(parseTrustDomain('example.org')).toBe('example.org');
    const rule = (s: string) => {
      try {
        parseTrustDomain(s);
        return 'accepted';
      } catch (err) {
        return (err as SpiffeIdError).rule;
      }
    };
    expect(rule('')).toBe('trust-domain-missing');
    expect(rule('Example.org')).toBe('trust-domain-case');
    expect(rule('example.org:443')).toBe('port');
    expect(rule('spiffe://example.org')).toBe('port');
    expect(rule('a'.repeat(256))).toBe('trust-domain-length');
  });
});

describe('parseSpiffeId properties', () => {
  const tdChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789.-_');
  const segChar = fc.constantFrom(...'abcXYZ0189.-_');
  const segment = fc.string({ unit: segChar, minLength: 1, maxLength: 12 }).filter((s) => s !== '.' && s !== '..');
  const validId = fc
    .tuple(fc.string({ unit: tdChar, minLength: 1, maxLength: 40 }), fc.array(segment, { maxLength: 6 }))
    .map(([td, segs]) => `spiffe://${td}${segs.map((s) => `/${s}`).join('')}`);

  it('accepts everything the grammar allows, and round-trips it', () => {
    fc.assert(
      fc.property(validId, (s) => {
        expect(parseSpiffeId(s).toString()).toBe(s);
      }),
    );
  });

  // Near-misses: the right prefix followed by characters that matter to the grammar.
  const tricky = fc
    .tuple(
      fc.constantFrom('spiffe://', 'SPIFFE://', 'spiffe:/', 'spiffe:', ''),
      fc.string({ unit: fc.constantFrom(...'aZ09.-_/%:@?#[]é \u0000\u{1F600}'), maxLength: 40 }),
    )
    .map(([p, s]) => p + s);

  it('never throws anything but SpiffeIdError, and whatever it accepts round-trips', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 200 }),
          tricky,
          validId.map((s) => s + '/'),
        ),
        (s) => {
          let id;
          try {
            id = parseSpiffeId(s);
          } catch (err) {
            expect(err).toBeInstanceOf(SpiffeIdError);
            expect(ALL_RULES).toContain((err as SpiffeIdError).rule);
            return;
          }
          expect(id.toString()).toBe(s);
          expect(s.startsWith('spiffe://')).toBe(true);
        },
      ),
      { numRuns: 1000 },
    );
  });
});
