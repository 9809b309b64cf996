/**
 * The replay key must identify the SVID, not its bytes: a copied token re-encoded so that it still
 * verifies (unused trailing bits of the signature's last base64url character, padding, whitespace
 * that base64 decoders skip, ECDSA s → n − s) must claim the same key, or one SVID opens many leases.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { TrustBundleSet, staticBundleSource } from '../../shared/identity/bundle.ts';
import { JwtSvidVerifier, replayKey } from '../../shared/identity/jwt-svid.ts';
import type { VerifiedWorkload } from '../../shared/lease/ports.ts';
import { DenialError } from '../../shared/lease/errors.ts';
import { bundleOf, fakeClock, makeKey, sign } from './helpers.ts';
import type { TestKey } from './helpers.ts';

const AUD = 'spiffe://broker.example/tasklease';
const SUB = 'spiffe://a.example/ns/jobs/sa/exporter';
const ALGS = ['ES256', 'ES384', 'RS256', 'PS256'] as const;
type Alg = (typeof ALGS)[number];

/** Curve orders, for the ECDSA malleability s → n − s. */
const ORDER: Partial<Record<Alg, bigint>> = {
  ES256: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  ES384: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
};

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

let clock: ReturnType<typeof fakeClock>;
let keys: Record<Alg, TestKey>;
let verifier: JwtSvidVerifier;

/** What today's code keyed a jti-less SVID on: the token's text. */
const tokenHashKey = (token: string): string => createHash('sha256').update(`token\0${token}`).digest('hex');

const claims = (extra: Record<string, unknown> = {}) => ({ sub: SUB, aud: [AUD], iat: clock.sec, exp: clock.sec + 300, ...extra });

const parts = (token: string): [string, string, string] => token.split('.') as [string, string, string];

/** Every value of the last character that decodes to the same bytes (only its unused low bits differ). */
function trailingBitVariants(segment: string): string[] {
  const unused = (segment.length * 6) % 8;
  if (unused === 0) return [];
  const last = B64URL.indexOf(segment.at(-1)!);
  const out: string[] = [];
  for (let low = 1; low < 1 << unused; low++) out.push(segment.slice(0, -1) + B64URL[last ^ low]);
  return out;
}

/** The other valid ECDSA signature over the same input: (r, n − s). */
function negateS(segment: string, n: bigint): string {
  const bytes = Buffer.from(segment, 'base64url');
  const half = bytes.length / 2;
  const s = BigInt(`0x${bytes.subarray(half).toString('hex')}`);
  const negated = Buffer.from((n - s).toString(16).padStart(half * 2, '0'), 'hex');
  return Buffer.concat([bytes.subarray(0, half), negated]).toString('base64url');
}

/** Every re-encoding of `token` we know; each either fails verification or must keep its key. */
function reEncodings(token: string, alg: Alg): Array<{ how: string; token: string }> {
  const [h, p, s] = parts(token);
  const out: Array<{ how: string; token: string }> = [];
  for (const v of trailingBitVariants(s)) out.push({ how: `signature last char ${s.at(-1)} → ${v.at(-1)}`, token: `${h}.${p}.${v}` });
  const pad = '='.repeat((4 - (s.length % 4)) % 4);
  if (pad) out.push({ how: 'signature padded', token: `${h}.${p}.${s}${pad}` });
  out.push({ how: 'space inside the signature', token: `${h}.${p}.${s.slice(0, 10)} ${s.slice(10)}` });
  out.push({ how: 'newline after the signature', token: `${h}.${p}.${s}\n` });
  const n = ORDER[alg];
  if (n) out.push({ how: 'ECDSA s → n − s', token: `${h}.${p}.${negateS(s, n)}` });
  // The header and payload are signed as text, so these must fail to verify; kept to prove it.
  for (const v of trailingBitVariants(h).slice(0, 1)) out.push({ how: 'header last char', token: `${v}.${p}.${s}` });
  for (const v of trailingBitVariants(p).slice(0, 1)) out.push({ how: 'payload last char', token: `${h}.${v}.${s}` });
  return out;
}

const verified = (token: string): Promise<VerifiedWorkload | DenialError> =>
  verifier.verify(token).catch((err: unknown) => {
    if (err instanceof DenialError) return err;
    throw err;
  });

beforeAll(async () => {
  clock = fakeClock();
  keys = {
    ES256: await makeKey('ES256'),
    ES384: await makeKey('ES384'),
    RS256: await makeKey('RS256'),
    PS256: await makeKey('PS256'),
  };
  const bundles = new TrustBundleSet({
    clock,
    domains: [{ trustDomain: 'a.example', source: staticBundleSource(bundleOf(Object.values(keys))) }],
  });
  verifier = new JwtSvidVerifier({ audience: AUD, bundles, clock });
});

describe('replay key of a re-encoded SVID', () => {
  it.each(ALGS)('%s: every re-encoding that still verifies has the original key', async (alg) => {
    const token = await sign(keys[alg], claims());
    const original = await verifier.verify(token);
    let stillVerified = 0;
    for (const variant of reEncodings(token, alg)) {
      expect(variant.token, variant.how).not.toBe(token);
      const result = await verified(variant.token);
      if (result instanceof DenialError) {
        expect(result.denial, variant.how).toBe('svid-invalid');
        continue;
      }
      stillVerified += 1;
      expect(result.replayKey, variant.how).toBe(original.replayKey);
      // Keying on the token's text (as before) would have let this copy open a second lease.
      expect(tokenHashKey(variant.token), variant.how).not.toBe(tokenHashKey(token));
    }
    // The attack is real for every alg: signature re-encodings do verify.
    expect(stillVerified).toBeGreaterThan(0);
  });

  it('a re-encoded header or payload never verifies (the signature covers their text)', async () => {
    const token = await sign(keys.ES256, claims());
    const [h, p, s] = parts(token);
    const tampered = [...trailingBitVariants(h).map((v) => `${v}.${p}.${s}`), ...trailingBitVariants(p).map((v) => `${h}.${v}.${s}`)];
    expect(tampered.length).toBeGreaterThan(0);
    for (const t of tampered) await expect(verifier.verify(t)).rejects.toMatchObject({ denial: 'svid-invalid' });
  });

  it('property: any mutation of a valid SVID that still verifies keeps its replay key', async () => {
    const tokens = await Promise.all(ALGS.map(async (alg) => ({ alg, token: await sign(keys[alg], claims({ iat: clock.sec - 1 })) })));
    const originals = await Promise.all(tokens.map((t) => verifier.verify(t.token)));
    let reEncodedAndVerified = 0;
    const mutation = fc.oneof(
      // Any character of any segment replaced by any base64url character (or padding/whitespace).
      fc.record({
        kind: fc.constant('replace' as const),
        seg: fc.integer({ min: 0, max: 2 }),
        at: fc.nat(),
        ch: fc.constantFrom(...B64URL, '=', ' ', '\t', '\n'),
      }),
      fc.record({
        kind: fc.constant('insert' as const),
        seg: fc.integer({ min: 0, max: 2 }),
        at: fc.nat(),
        ch: fc.constantFrom('=', ' ', '\t', '\n', '\r', 'A'),
      }),
      fc.record({ kind: fc.constant('last-bits' as const), seg: fc.integer({ min: 0, max: 2 }), low: fc.integer({ min: 1, max: 15 }) }),
      fc.record({ kind: fc.constant('negate-s' as const) }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: tokens.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        async (which, mutations) => {
          const { alg, token } = tokens[which]!;
          const segs = parts(token);
          for (const m of mutations) {
            if (m.kind === 'negate-s') {
              const n = ORDER[alg];
              if (n && Buffer.from(segs[2], 'base64url').length % 2 === 0) segs[2] = negateS(segs[2], n);
              continue;
            }
            const seg = segs[m.seg]!;
            if (m.kind === 'last-bits') {
              const unused = (seg.length * 6) % 8;
              const idx = B64URL.indexOf(seg.at(-1)!);
              if (unused > 0 && idx >= 0) segs[m.seg] = seg.slice(0, -1) + B64URL[idx ^ (m.low % (1 << unused) || 1)];
            } else {
              const at = m.at % (seg.length + (m.kind === 'insert' ? 1 : 0));
              segs[m.seg] = seg.slice(0, at) + m.ch + seg.slice(m.kind === 'insert' ? at : at + 1);
            }
          }
          const mutated = segs.join('.');
          const result = await verified(mutated);
          if (result instanceof DenialError) return;
          if (mutated !== token) reEncodedAndVerified += 1;
          expect(result.replayKey).toBe(originals[which]!.replayKey);
        },
      ),
      { numRuns: 300, seed: 12 },
    );
    // Not vacuous: the generator does find different strings that verify.
    expect(reEncodedAndVerified).toBeGreaterThan(10);
  });
});

describe('replay key material', () => {
  const base = { sub: SUB, aud: [AUD], exp: 2_000_000_300, iat: 2_000_000_000 };

  it('without a jti: every identifying claim counts, their encoding does not', () => {
    const k = replayKey('a.example', base);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(replayKey('a.example', { ...base, aud: AUD })).toBe(k); // "aud": "x" is "aud": ["x"]
    expect(replayKey('a.example', { ...base, aud: [AUD, 'other'] })).toBe(replayKey('a.example', { ...base, aud: ['other', AUD] }));
    for (const changed of [
      { sub: 'spiffe://a.example/other' },
      { aud: ['other'] },
      { exp: base.exp + 1 },
      { iat: base.iat + 1 },
      { iat: undefined },
      { nbf: base.iat },
    ]) {
      expect(replayKey('a.example', { ...base, ...changed }), JSON.stringify(changed)).not.toBe(k);
    }
    expect(replayKey('b.example', base)).not.toBe(k);
  });

  it('with a jti: the trust domain and jti (the token identifier), whatever else it says', () => {
    const k = replayKey('a.example', { ...base, jti: 'abc' });
    expect(k).toBe(createHash('sha256').update('jti\0a.example\0abc').digest('hex')); // unchanged, so existing claims still hold
    expect(replayKey('a.example', { ...base, exp: base.exp + 60, jti: 'abc' })).toBe(k);
    expect(replayKey('b.example', { ...base, jti: 'abc' })).not.toBe(k);
    expect(replayKey('a.example', base)).not.toBe(k);
  });

  it('no delimiter games: claims that would concatenate alike still differ', () => {
    const a = replayKey('a.example', { ...base, aud: ['x","y'] });
    const b = replayKey('a.example', { ...base, aud: ['x', 'y'] });
    expect(a).not.toBe(b);
  });
});
