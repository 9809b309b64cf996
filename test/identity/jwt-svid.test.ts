import { createHash, createHmac } from 'node:crypto';
import { exportJWK, exportSPKI, importJWK } from 'jose';
import type { CryptoKey } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { TrustBundleSet, staticBundleSource } from '../../shared/identity/bundle.ts';
import { JwtSvidVerifier, TrustBundleUnavailableError, replayKey } from '../../shared/identity/jwt-svid.ts';
import type { JwtSvidAlgorithm } from '../../shared/identity/jwt-svid.ts';
import { DenialError } from '../../shared/lease/errors.ts';
import type { DenialCode } from '../../shared/events/schemas.ts';
import { b64url, bundleOf, fakeClock, makeKey, sign } from './helpers.ts';
import type { TestKey } from './helpers.ts';

const AUD = 'spiffe://broker.example/tasklease';
const SUB_A = 'spiffe://a.example/ns/jobs/sa/exporter';
const SUB_B = 'spiffe://b.example/worker';

let clock: ReturnType<typeof fakeClock>;
let keysA: Record<'ES256' | 'ES384' | 'RS256' | 'PS256', TestKey>;
let keyB: TestKey;
let outsider: TestKey;
let verifier: JwtSvidVerifier;

function verifierWith(skew?: number, requireJti?: boolean | string[]) {
  const bundles = new TrustBundleSet({
    clock,
    domains: [
      { trustDomain: 'a.example', source: staticBundleSource(bundleOf(Object.values(keysA))) },
      { trustDomain: 'b.example', source: staticBundleSource(bundleOf([keyB])) },
    ],
  });
  return new JwtSvidVerifier({ audience: AUD, bundles, clock, clockSkewSeconds: skew, requireJti });
}

/** Claims of a good SVID at the current fake time. */
function claims(overrides: Record<string, unknown> = {}) {
  return { sub: SUB_A, aud: [AUD], iat: clock.sec, exp: clock.sec + 300, ...overrides };
}

async function expectDenial(token: string, code: DenialCode, message: RegExp, v = verifier): Promise<DenialError> {
  const err = await v.verify(token).then(
    () => expect.unreachable('token was accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DenialError);
  const denial = err as DenialError;
  expect(denial.denial).toBe(code);
  expect(denial.message).toMatch(message);
  // Never the token, nor any of its parts, in a message.
  for (const part of String(token ?? '')
    .split('.')
    .filter((p) => p.length > 8))
    expect(denial.message).not.toContain(part);
  return denial;
}

/** The same RSA key material, usable for another RSA alg (WebCrypto keys are bound to one). */
async function asAlg(key: TestKey, alg: JwtSvidAlgorithm): Promise<TestKey> {
  return { ...key, privateKey: (await importJWK(await exportJWK(key.privateKey), alg)) as CryptoKey };
}

beforeAll(async () => {
  clock = fakeClock();
  keysA = {
    ES256: await makeKey('ES256'),
    ES384: await makeKey('ES384'),
    RS256: await makeKey('RS256'),
    PS256: await makeKey('PS256'),
  };
  keyB = await makeKey('ES256');
  outsider = await makeKey('ES256');
  verifier = verifierWith();
});

describe('JwtSvidVerifier accepts', () => {
  it.each(['RS256', 'ES256', 'ES384', 'PS256'] as const)('%s', async (alg) => {
    const token = await sign(keysA[alg], claims());
    const w = await verifier.verify(token);
    expect(w).toEqual({
      spiffeId: SUB_A,
      trustDomain: 'a.example',
      replayKey: replayKey('a.example', { sub: SUB_A, aud: [AUD], iat: clock.sec, exp: clock.sec + 300 }),
      expiresAt: (clock.sec + 300) * 1000,
    });
  });

  it('the same key signing for a different alg of its family (RS256 key, PS256 header) is fine, a wrong curve is not', async () => {
    const rsa = await asAlg(keysA.RS256, 'PS256');
    const ps = await sign(rsa, claims(), { alg: 'PS256', kid: rsa.kid });
    await expect(verifier.verify(ps)).resolves.toMatchObject({ spiffeId: SUB_A });
    const wrongCurve = await sign(keysA.ES384, claims(), { alg: 'ES384', kid: keysA.ES256.kid });
    await expectDenial(wrongCurve, 'svid-invalid', /cannot verify ES384/);
  });

  it('a string aud, typ JOSE or no typ, and a second audience', async () => {
    const k = keysA.ES256;
    await expect(verifier.verify(await sign(k, claims({ aud: AUD })))).resolves.toBeDefined();
    await expect(verifier.verify(await sign(k, claims({ aud: ['other', AUD] })))).resolves.toBeDefined();
    await expect(verifier.verify(await sign(k, claims(), { alg: 'ES256', kid: k.kid, typ: 'JOSE' }))).resolves.toBeDefined();
    await expect(verifier.verify(await sign(k, claims(), { alg: 'ES256', kid: k.kid }))).resolves.toBeDefined();
  });

  it('a token expired within the clock skew, and honours a configured skew', async () => {
    const token = await sign(keysA.ES256, claims({ iat: clock.sec - 600, exp: clock.sec - 10 }));
    await expect(verifier.verify(token)).resolves.toBeDefined();
    await expectDenial(token, 'svid-expired', /expired at/, verifierWith(5));
  });

  it('derives the replay key from the trust domain and jti when there is one', async () => {
    const t1 = await sign(keysA.ES256, claims({ jti: 'abc' }));
    const t2 = await sign(keysA.ES256, claims({ jti: 'abc', exp: clock.sec + 200 }));
    const t3 = await sign(keyB, claims({ sub: SUB_B, jti: 'abc' }));
    const [r1, r2, r3] = await Promise.all([t1, t2, t3].map((t) => verifier.verify(t)));
    expect(r1!.replayKey).toBe(createHash('sha256').update('jti\0a.example\0abc').digest('hex'));
    expect(r2!.replayKey).toBe(r1!.replayKey); // a re-minted token with the same jti is the same SVID
    expect(r3!.replayKey).not.toBe(r1!.replayKey); // jti is only unique within its trust domain
    expect(r1!.replayKey).not.toContain('abc');
  });
});

describe('JwtSvidVerifier rejects', () => {
  it('an expired SVID', async () => {
    const token = await sign(keysA.ES256, claims({ iat: clock.sec - 600, exp: clock.sec - 60 }));
    await expectDenial(token, 'svid-expired', /expired at .*fetch a fresh SVID/);
  });

  it('an SVID not yet valid (nbf) or issued in the future (iat)', async () => {
    await expectDenial(await sign(keysA.ES256, claims({ nbf: clock.sec + 120 })), 'svid-invalid', /not valid before/);
    await expectDenial(await sign(keysA.ES256, claims({ iat: clock.sec + 120 })), 'svid-invalid', /issued at .* in the future/);
  });

  it('a wrong audience', async () => {
    const token = await sign(keysA.ES256, claims({ aud: ['spiffe://broker.example/other'] }));
    await expectDenial(token, 'svid-invalid', /not "spiffe:\/\/broker\.example\/tasklease"; mint it with audience/);
  });

  it.each(['aud', 'exp', 'sub'])('a missing %s', async (claim) => {
    const c: Record<string, unknown> = claims();
    delete c[claim];
    await expectDenial(await sign(keysA.ES256, c), 'svid-invalid', new RegExp(`no "${claim}" claim`));
  });

  it('a missing kid', async () => {
    const token = await sign(keysA.ES256, claims(), { alg: 'ES256', typ: 'JWT' });
    await expectDenial(token, 'svid-invalid', /no "kid"/);
  });

  it('a sub that is not a SPIFFE ID', async () => {
    await expectDenial(
      await sign(keysA.ES256, claims({ sub: 'spiffe://a.example/x/' })),
      'svid-invalid',
      /not a SPIFFE ID.*path-trailing-slash/,
    );
    await expectDenial(await sign(keysA.ES256, claims({ sub: 'exporter' })), 'svid-invalid', /not a SPIFFE ID.*rule: scheme/);
    await expectDenial(await sign(keysA.ES256, claims({ sub: 42 })), 'svid-invalid', /"sub" claim is not a string/);
  });

  it('a sub in an untrusted trust domain', async () => {
    const token = await sign(outsider, claims({ sub: 'spiffe://c.example/w' }));
    await expectDenial(token, 'svid-untrusted', /trust domain "c\.example" .* is not trusted \(trusted: a\.example, b\.example\)/);
  });

  it('a key of trust domain A signing a sub of B', async () => {
    const token = await sign(keysA.ES256, claims({ sub: SUB_B }));
    await expectDenial(token, 'svid-untrusted', /key ".*" is not in the trust bundle of b\.example/);
    // Even naming B's kid does not help: B's key does not verify A's signature.
    const borrowed = await sign(keysA.ES256, claims({ sub: SUB_B }), { alg: 'ES256', kid: keyB.kid, typ: 'JWT' });
    await expectDenial(borrowed, 'svid-invalid', /signature .* does not verify with key/);
  });

  it('an unknown kid', async () => {
    const token = await sign(outsider, claims());
    await expectDenial(token, 'svid-untrusted', /not in the trust bundle of a\.example \(known: /);
  });

  it('a tampered payload', async () => {
    const [h, , s] = (await sign(keysA.ES256, claims())).split('.');
    const forged = `${h}.${b64url(claims({ sub: 'spiffe://a.example/admin' }))}.${s}`;
    await expectDenial(forged, 'svid-invalid', /signature of spiffe:\/\/a\.example\/admin does not verify/);
  });

  it('alg none', async () => {
    const token = `${b64url({ alg: 'none', kid: keysA.ES256.kid, typ: 'JWT' })}.${b64url(claims())}.`;
    await expectDenial(token, 'svid-invalid', /alg "none" is not allowed/);
  });

  it('HS256 signed with the public key bytes (algorithm confusion)', async () => {
    for (const key of [keysA.RS256, keysA.ES256]) {
      const input = `${b64url({ alg: 'HS256', kid: key.kid, typ: 'JWT' })}.${b64url(claims())}`;
      for (const secret of [await exportSPKI(key.publicKey), JSON.stringify(key.jwk)]) {
        const token = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
        await expectDenial(token, 'svid-invalid', /alg "HS256" is not allowed/);
      }
    }
  });

  it.each(['ES256K', 'EdDSA', 'HS512', 'RSA-OAEP'])('other algs (%s)', async (alg) => {
    const token = `${b64url({ alg, kid: keysA.ES256.kid })}.${b64url(claims())}.c2ln`;
    await expectDenial(token, 'svid-invalid', new RegExp(`alg "${alg}" is not allowed`));
  });

  it('a typ other than JWT or JOSE', async () => {
    const token = await sign(keysA.ES256, claims(), { alg: 'ES256', kid: keysA.ES256.kid, typ: 'at+jwt' });
    await expectDenial(token, 'svid-invalid', /typ "at\+jwt" is not allowed/);
  });

  it.each(['jku', 'jwk', 'x5u', 'crit'])('a %s header (JWT-SVIDs allow only alg, kid, typ)', async (name) => {
    const value = name === 'crit' ? ['exp'] : name === 'jwk' ? keysA.ES256.jwk : 'https://evil.example/keys';
    const token = await sign(keysA.ES256, claims(), { alg: 'ES256', kid: keysA.ES256.kid, [name]: value }).catch(
      // jose refuses to sign some of these; build them by hand then (the signature won't matter).
      () => `${b64url({ alg: 'ES256', kid: keysA.ES256.kid, [name]: value })}.${b64url(claims())}.c2ln`,
    );
    await expectDenial(token, 'svid-invalid', new RegExp(`header carries "${name}"`));
  });

  it('garbage, JWE, oversize and empty inputs', async () => {
    await expectDenial('', 'svid-invalid', /no JWT-SVID/);
    await expectDenial('not-a-jwt', 'svid-invalid', /compact serialization/);
    await expectDenial('a.b.c.d.e', 'svid-invalid', /compact serialization/);
    await expectDenial('%%%.%%%.%%%', 'svid-invalid', /header is not base64url/);
    await expectDenial(`${b64url({ alg: 'ES256', kid: 'k' })}.${b64url('[1]')}.c2ln`, 'svid-invalid', /payload is not/);
    await expectDenial(`${b64url({ alg: 'ES256', kid: 'k' })}.${'A'.repeat(20_000)}.c2ln`, 'svid-invalid', /longer than 16384/);
    await expectDenial(undefined as unknown as string, 'svid-invalid', /no JWT-SVID/);
  });

  it('a bad jti or non-numeric exp', async () => {
    await expectDenial(await sign(keysA.ES256, claims({ jti: '' })), 'svid-invalid', /"jti"/);
    await expectDenial(await sign(keysA.ES256, claims({ exp: 'tomorrow' })), 'svid-invalid', /invalid "exp" claim/);
  });
});

describe('JwtSvidVerifier with requireJti', () => {
  it('refuses an SVID without jti in a trust domain that requires one, saying what to change', async () => {
    const v = verifierWith(undefined, ['a.example']);
    const denial = await expectDenial(
      await sign(keysA.ES256, claims()),
      'svid-invalid',
      /no "jti" claim, which trust domain a\.example requires \(trustDomains\.a\.example\.requireJti\)/,
      v,
    );
    expect(denial.message).toMatch(/mint SVIDs with a unique jti/);
    await expect(v.verify(await sign(keysA.ES256, claims({ jti: 'j-1' })))).resolves.toMatchObject({ spiffeId: SUB_A });
    // Other trust domains keep their own setting.
    await expect(v.verify(await sign(keyB, claims({ sub: SUB_B })))).resolves.toMatchObject({ spiffeId: SUB_B });
  });

  it('true requires it everywhere; off (the default) accepts SVIDs without jti', async () => {
    await expectDenial(
      await sign(keyB, claims({ sub: SUB_B })),
      'svid-invalid',
      /no "jti" claim, which trust domain b\.example requires/,
      verifierWith(undefined, true),
    );
    await expect(verifierWith(undefined, false).verify(await sign(keyB, claims({ sub: SUB_B })))).resolves.toBeDefined();
    await expect(verifier.verify(await sign(keyB, claims({ sub: SUB_B })))).resolves.toBeDefined();
  });

  it('checks the signature first: a forged jti-less token is refused for its signature, not for the missing jti', async () => {
    const token = await sign(outsider, claims(), { alg: 'ES256', kid: keysA.ES256.kid, typ: 'JWT' });
    await expectDenial(token, 'svid-invalid', /signature .* does not verify/, verifierWith(undefined, true));
  });
});

describe('JwtSvidVerifier with unavailable bundles', () => {
  it('fails retryably (never a denial) and says why when a bundle never loaded', async () => {
    const bundles = new TrustBundleSet({
      clock,
      domains: [{ trustDomain: 'a.example', source: { description: 'broken', load: () => Promise.reject(new Error('boom')) } }],
    });
    const v = new JwtSvidVerifier({ audience: AUD, bundles, clock });
    const err = await v.verify(await sign(keysA.ES256, claims())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustBundleUnavailableError);
    expect(err).not.toBeInstanceOf(DenialError);
    expect((err as Error).message).toMatch(/trust bundle of a\.example is not available \(.*broken.*boom/);
  });

  it('refuses a kid whose bundle key pins a different alg', async () => {
    const pinned = { ...keysA.RS256, jwk: { ...keysA.RS256.jwk, alg: 'RS256' } };
    const bundles = new TrustBundleSet({ clock, domains: [{ trustDomain: 'a.example', source: staticBundleSource(bundleOf([pinned])) }] });
    const v = new JwtSvidVerifier({ audience: AUD, bundles, clock });
    await expect(v.verify(await sign(pinned, claims()))).resolves.toBeDefined();
    const ps = await sign(await asAlg(pinned, 'PS256'), claims(), { alg: 'PS256', kid: pinned.kid });
    await expectDenial(ps, 'svid-invalid', /is for RS256, but the JWT-SVID says PS256/, v);
  });
});
