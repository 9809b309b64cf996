import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Grant } from '../../shared/events/schemas.ts';
import type { PolicyDecision, PolicyRequest } from '../../shared/lease/ports.ts';
import { parseConfig, TaskLeaseConfigSchema } from '../../shared/policy/config.ts';
import type { TaskLeaseConfigInput } from '../../shared/policy/config.ts';
import { ConfigPolicy } from '../../shared/policy/evaluate.ts';
import { compilePattern, matchesPattern } from '../../shared/policy/pattern.ts';

const g = (s: string): Grant => {
  const [target = '', access = ''] = s.split('.');
  return { target, access };
};

type RuleInput = TaskLeaseConfigInput['rules'][number];

function policy(rules: RuleInput[]): ConfigPolicy {
  const config = TaskLeaseConfigSchema.parse({
    audience: 'tasklease',
    trustDomains: { td: { bundle: { local: true } }, other: { bundle: { local: true } } },
    targets: {
      db: { kind: 'fake', settings: {}, access: { read: {}, write: {}, admin: {} } },
      cache: { kind: 'fake', settings: {}, access: { read: {} } },
    },
    rules,
  });
  return new ConfigPolicy(config);
}

const rule = (id: string, spiffeId: string, grants: string[] = ['db.read'], extra: Partial<RuleInput> = {}): RuleInput => ({
  id,
  spiffeId,
  grants,
  maxLeaseSeconds: 900,
  ...extra,
});

const req = (workload: string, grants: string[] = ['db.read'], extra: Partial<PolicyRequest> = {}): PolicyRequest => ({
  workload,
  grants: grants.map(g),
  durationSeconds: 600,
  ...extra,
});

function denied(d: PolicyDecision): Extract<PolicyDecision, { allowed: false }> {
  if (d.allowed) throw new Error(`expected a denial, got ${JSON.stringify(d)}`);
  return d;
}

describe('default deny', () => {
  it('no rules: everything is denied with policy-no-rule', () => {
    const d = denied(policy([]).evaluate(req('spiffe://td/etl/job')));
    expect(d.code).toBe('policy-no-rule');
    expect(d.rule).toBeUndefined();
    expect(d.message).toContain('no rule matches workload spiffe://td/etl/job');
    expect(d.message).toContain('add a rule');
  });

  it('a workload no pattern covers is denied', () => {
    const p = policy([rule('etl', 'spiffe://td/etl/*')]);
    expect(denied(p.evaluate(req('spiffe://td/billing/job'))).code).toBe('policy-no-rule');
  });

  it('a workload that is not a SPIFFE ID never matches', () => {
    const p = policy([rule('all', 'spiffe://td/*')]);
    for (const w of [
      '',
      'td/etl/job',
      'https://td/etl',
      'spiffe://td',
      'spiffe://td/',
      'spiffe://td/a//b',
      'spiffe://td/a/../b',
      'spiffe://td/a?x',
    ]) {
      expect(denied(p.evaluate(req(w))).code).toBe('policy-no-rule');
    }
  });
});

describe('pattern semantics', () => {
  const prefix = policy([rule('a-prefix', 'spiffe://td/a/*')]);
  const exact = policy([rule('a-exact', 'spiffe://td/a')]);

  it.each([
    ['spiffe://td/a/b', true],
    ['spiffe://td/a/b/c', true],
    ['spiffe://td/a', false], // the prefix itself is not under it
    ['spiffe://td/ab', false], // segments compare whole
    ['spiffe://td/ab/c', false],
    ['spiffe://td/b/a/c', false],
    ['spiffe://other/a/b', false], // same path, other trust domain
    ['spiffe://td.evil/a/b', false],
    ['spiffe://TD/a/b', false],
  ])('spiffe://td/a/* vs %s → %s', (workload, allowed) => {
    expect(prefix.evaluate(req(workload)).allowed).toBe(allowed);
  });

  it.each([
    ['spiffe://td/a', true],
    ['spiffe://td/a/b', false],
    ['spiffe://td/ab', false],
    ['spiffe://td/A', false],
    ['spiffe://other/a', false],
  ])('exact spiffe://td/a vs %s → %s', (workload, allowed) => {
    expect(exact.evaluate(req(workload)).allowed).toBe(allowed);
  });

  it('spiffe://td/* matches every workload of td and nothing else', () => {
    const p = policy([rule('td-all', 'spiffe://td/*')]);
    expect(p.evaluate(req('spiffe://td/a')).allowed).toBe(true);
    expect(p.evaluate(req('spiffe://td/a/b/c')).allowed).toBe(true);
    expect(p.evaluate(req('spiffe://other/a')).allowed).toBe(false);
    expect(p.evaluate(req('spiffe://td')).allowed).toBe(false);
  });

  it('property: a prefix pattern matches exactly the IDs one or more segments below it', () => {
    const seg = fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,7}$/).filter((s) => s !== '.' && s !== '..');
    const path = fc.array(seg, { minLength: 0, maxLength: 3 });
    fc.assert(
      fc.property(path, path, fc.constantFrom('td', 'other'), (base, id, td) => {
        const pattern = compilePattern(`spiffe://td/${[...base, '*'].join('/')}`);
        const workload = `spiffe://${td}/${id.join('/')}`;
        const expected = td === 'td' && id.length > base.length && base.every((s, i) => id[i] === s);
        expect(matchesPattern(pattern, workload)).toBe(expected);
      }),
    );
  });

  it('property: evaluate never throws and never allows what no rule grants', () => {
    const p = policy([rule('etl', 'spiffe://td/etl/*'), rule('w', 'spiffe://td/billing/writer', ['db.read', 'db.write'])]);
    fc.assert(
      fc.property(
        fc.string(),
        fc.constantFrom('db.read', 'db.write', 'db.admin', 'cache.read'),
        fc.integer({ min: -5, max: 100_000 }),
        (w, grant, dur) => {
          const d = p.evaluate(req(w, [grant], { durationSeconds: dur }));
          if (d.allowed) expect(grant === 'db.read' || grant === 'db.write').toBe(true);
          if (d.allowed) expect(dur).toBeLessThanOrEqual(900);
        },
      ),
    );
  });
});

describe('the most specific rule wins', () => {
  const p = policy([
    rule('td-all', 'spiffe://td/*', ['cache.read']),
    rule('etl', 'spiffe://td/etl/*', ['db.read']),
    rule('etl-nightly', 'spiffe://td/etl/nightly/*', ['db.read', 'db.write']),
    rule('etl-nightly-loader', 'spiffe://td/etl/nightly/loader', ['db.admin'], { maxLeaseSeconds: 300 }),
  ]);

  it.each([
    ['spiffe://td/web', 'td-all'],
    ['spiffe://td/etl/daily', 'etl'],
    ['spiffe://td/etl/nightly/other', 'etl-nightly'],
    ['spiffe://td/etl/nightly/loader', 'etl-nightly-loader'], // exact beats every prefix
    ['spiffe://td/etl/nightly/loader/x', 'etl-nightly'],
    ['spiffe://td/etl/nightly', 'etl'], // /etl/nightly/* does not cover /etl/nightly
  ])('%s is decided by %s', (workload, id) => {
    expect(p.ruleFor(workload)?.id).toBe(id);
  });

  it('does not depend on rule order', () => {
    const reversed = policy([
      rule('etl-nightly-loader', 'spiffe://td/etl/nightly/loader', ['db.admin']),
      rule('etl-nightly', 'spiffe://td/etl/nightly/*', ['db.read', 'db.write']),
      rule('etl', 'spiffe://td/etl/*', ['db.read']),
      rule('td-all', 'spiffe://td/*', ['cache.read']),
    ]);
    expect(reversed.ruleFor('spiffe://td/etl/nightly/x')?.id).toBe('etl-nightly');
    expect(reversed.ruleFor('spiffe://td/etl/x')?.id).toBe('etl');
  });

  it('a broader rule is not a fallback: the specific rule alone decides', () => {
    // td-all allows cache.read, but the ETL workloads' own rule does not.
    const d = denied(p.evaluate(req('spiffe://td/etl/daily', ['cache.read'])));
    expect(d.code).toBe('policy-grant-not-allowed');
    expect(d.rule).toBe('etl');
  });

  it('the allowed decision carries the deciding rule and its limit', () => {
    expect(p.evaluate(req('spiffe://td/etl/nightly/loader', ['db.admin'], { durationSeconds: 300 }))).toEqual({
      allowed: true,
      rule: 'etl-nightly-loader',
      maxLeaseSeconds: 300,
    });
  });
});

describe('grants', () => {
  const p = policy([rule('etl', 'spiffe://td/etl/*', ['db.read', 'cache.read'])]);

  it('all requested grants allowed → allowed', () => {
    expect(p.evaluate(req('spiffe://td/etl/x', ['db.read', 'cache.read'])).allowed).toBe(true);
  });

  it('partial grants are denied whole, naming the grants not allowed and the rule', () => {
    const d = denied(p.evaluate(req('spiffe://td/etl/x', ['db.read', 'db.write', 'db.admin'])));
    expect(d.code).toBe('policy-grant-not-allowed');
    expect(d.rule).toBe('etl');
    expect(d.message).toContain('grants db.write, db.admin not allowed for spiffe://td/etl/x');
    expect(d.message).toContain("rule 'etl' (rules[0])");
    expect(d.message).toContain('which allows: db.read, cache.read');
    expect(d.message).toContain('rules[0].grants');
    expect(d.message).not.toMatch(/db\.read,? not allowed/);
  });

  it('a grant on an unconfigured target is simply not allowed', () => {
    expect(denied(p.evaluate(req('spiffe://td/etl/x', ['nope.read']))).code).toBe('policy-grant-not-allowed');
  });

  it('a request with no grants is denied', () => {
    const d = denied(p.evaluate(req('spiffe://td/etl/x', [])));
    expect(d.code).toBe('policy-grant-not-allowed');
    expect(d.message).toContain('names no grants');
  });
});

describe('duration', () => {
  const p = policy([rule('etl', 'spiffe://td/etl/*', ['db.read'], { maxLeaseSeconds: 900 })]);

  it('up to the limit is allowed', () => {
    expect(p.evaluate(req('spiffe://td/etl/x', ['db.read'], { durationSeconds: 900 }))).toEqual({
      allowed: true,
      rule: 'etl',
      maxLeaseSeconds: 900,
    });
  });

  it('over the limit is denied and the message says the limit and what to change', () => {
    const d = denied(p.evaluate(req('spiffe://td/etl/x', ['db.read'], { durationSeconds: 901 })));
    expect(d.code).toBe('policy-duration-exceeded');
    expect(d.rule).toBe('etl');
    expect(d.message).toContain('requested duration 901s exceeds the 900s limit');
    expect(d.message).toContain('rules[0].maxLeaseSeconds');
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])('a nonsensical duration %s is denied', (durationSeconds) => {
    expect(denied(p.evaluate(req('spiffe://td/etl/x', ['db.read'], { durationSeconds }))).code).toBe('policy-duration-exceeded');
  });
});

describe('initiators', () => {
  const p = policy([
    rule('guarded', 'spiffe://td/etl/*', ['db.read'], { initiators: ['alice@example.org', 'bob@example.org'] }),
    rule('open', 'spiffe://td/reports/*', ['db.read']),
  ]);

  it('an asserted initiator, even a listed one, is refused: policy-initiator-unproven, with what to change', () => {
    for (const extra of [{ initiator: 'bob@example.org' }, { initiator: 'bob@example.org', initiatorProof: 'asserted' as const }]) {
      const d = denied(p.evaluate(req('spiffe://td/etl/x', ['db.read'], extra)));
      expect(d.code).toBe('policy-initiator-unproven');
      expect(d.rule).toBe('guarded');
      expect(d.message).toContain('only asserted by its sender');
      expect(d.message).toContain('remove rules[0].initiators');
    }
  });

  it('an unlisted (and so unproven) initiator is refused the same way', () => {
    const d = denied(p.evaluate(req('spiffe://td/etl/x', ['db.read'], { initiator: 'mallory@example.org', initiatorProof: 'asserted' })));
    expect(d.code).toBe('policy-initiator-unproven');
  });

  it('a missing initiator is denied when the rule lists initiators', () => {
    const d = denied(p.evaluate(req('spiffe://td/etl/x', ['db.read'])));
    expect(d.code).toBe('policy-initiator-not-allowed');
    expect(d.message).toContain('the request named none');
    expect(d.message).toContain('remove rules[0].initiators');
  });

  it('without a list any initiator, or none, is allowed', () => {
    expect(p.evaluate(req('spiffe://td/reports/x', ['db.read'])).allowed).toBe(true);
    expect(p.evaluate(req('spiffe://td/reports/x', ['db.read'], { initiator: 'anyone' })).allowed).toBe(true);
  });
});

describe('endedBy: who besides the workload may end its tasks', () => {
  const p = policy([
    rule('etl', 'spiffe://td/etl/*', ['db.read'], { endedBy: ['spiffe://td/engines/sfn', 'spiffe://td/engines/argo/*'] }),
    rule('etl-special', 'spiffe://td/etl/special', ['db.read']),
    rule('other-td', 'spiffe://other/*', ['db.read'], { endedBy: ['spiffe://td/engines/sfn'] }),
  ]);

  it('an engine matching the rule endedBy patterns may end; others may not, with the field to change', () => {
    expect(p.mayEnd('spiffe://td/engines/sfn', 'spiffe://td/etl/x')).toEqual({ allowed: true });
    expect(p.mayEnd('spiffe://td/engines/argo/prod', 'spiffe://td/etl/x')).toEqual({ allowed: true });
    const no = p.mayEnd('spiffe://td/etl/y', 'spiffe://td/etl/x');
    expect(no.allowed).toBe(false);
    expect(no.allowed === false && no.message).toContain('rules[0].endedBy');
  });

  it('the most specific rule decides, as for starts: a narrower rule without endedBy allows no engine', () => {
    const no = p.mayEnd('spiffe://td/engines/sfn', 'spiffe://td/etl/special');
    expect(no.allowed === false && no.message).toContain('which lists none');
  });

  it('a workload no rule matches, or an invalid ender, may not be ended by anyone else', () => {
    expect(p.mayEnd('spiffe://td/engines/sfn', 'spiffe://td/nobody/x').allowed).toBe(false);
    expect(p.mayEnd('not a spiffe id', 'spiffe://td/etl/x').allowed).toBe(false);
    // An engine may be in another trust domain, when the rule says so.
    expect(p.mayEnd('spiffe://td/engines/sfn', 'spiffe://other/w')).toEqual({ allowed: true });
  });

  it('endedBy patterns are checked like spiffeId, and an empty list is refused', () => {
    expect(() => policy([rule('bad', 'spiffe://td/etl/*', ['db.read'], { endedBy: ['https://td/x'] })])).toThrow();
    expect(() => policy([rule('empty', 'spiffe://td/etl/*', ['db.read'], { endedBy: [] })])).toThrow(/must not be empty/);
  });
});

describe('readerPrincipal', () => {
  it('comes from the rule awsPrincipal', () => {
    const p = policy([rule('etl', 'spiffe://td/etl/*', ['db.read'], { awsPrincipal: 'arn:aws:iam::123456789012:role/etl' })]);
    expect(p.evaluate(req('spiffe://td/etl/x'))).toEqual({
      allowed: true,
      rule: 'etl',
      maxLeaseSeconds: 900,
      readerPrincipal: 'arn:aws:iam::123456789012:role/etl',
    });
  });
});

describe('the demo config', () => {
  it('lets ETL read, the billing writer write, and denies an ETL write with its reason', async () => {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(new URL('../../tasklease.config.yaml', import.meta.url), 'utf8');
    const p = new ConfigPolicy(parseConfig(text, 'tasklease.config.yaml'));
    const td = 'spiffe://demo.tasklease.local';
    expect(p.evaluate(req(`${td}/etl/nightly`, ['orders-db.read']))).toMatchObject({ allowed: true, rule: 'etl-readers' });
    expect(p.evaluate(req(`${td}/billing/writer`, ['orders-db.read', 'orders-db.write']))).toMatchObject({
      allowed: true,
      rule: 'billing-writer',
    });
    const d = denied(p.evaluate(req(`${td}/etl/nightly`, ['orders-db.read', 'orders-db.write'])));
    expect(d.code).toBe('policy-grant-not-allowed');
    expect(d.message).toContain("grant orders-db.write not allowed for spiffe://demo.tasklease.local/etl/nightly by rule 'etl-readers'");
    expect(denied(p.evaluate(req(`${td}/billing/reader`, ['orders-db.read']))).code).toBe('policy-no-rule');
    expect(denied(p.evaluate(req(`${td}/etl`, ['orders-db.read']))).code).toBe('policy-no-rule');
  });
});
