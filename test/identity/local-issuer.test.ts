import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrustBundleSet, httpBundleSource } from '../../shared/identity/bundle.ts';
import { JwtSvidVerifier } from '../../shared/identity/jwt-svid.ts';
import { DenialError } from '../../shared/lease/errors.ts';
import { LocalSpiffeIssuer } from '../../local/spiffe-issuer.ts';
import { fakeClock } from './helpers.ts';

const AUD = 'tasklease';
const WORKLOAD = 'spiffe://demo.local/workload/exporter';

describe('LocalSpiffeIssuer over loopback HTTP', () => {
  const clock = fakeClock(Date.now());
  let issuer: LocalSpiffeIssuer;
  let bundles: TrustBundleSet;
  let verifier: JwtSvidVerifier;
  const errors: string[] = [];

  beforeAll(async () => {
    issuer = await LocalSpiffeIssuer.start({ trustDomain: 'demo.local', clock, refreshHintSeconds: 600 });
    bundles = new TrustBundleSet({
      clock,
      domains: [{ trustDomain: 'demo.local', source: httpBundleSource(issuer.bundleUrl) }],
      onError: (_td, e) => errors.push(e.message),
    });
    verifier = new JwtSvidVerifier({ audience: AUD, bundles, clock });
  });

  afterAll(async () => {
    await issuer.close();
  });

  it('serves a public SPIFFE bundle on 127.0.0.1', async () => {
    expect(issuer.bundleUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const res = await fetch(issuer.bundleUrl);
    expect(res.headers.get('content-type')).toBe('application/json');
    const doc = (await res.json()) as { keys: Array<Record<string, unknown>>; spiffe_refresh_hint: number };
    expect(doc.spiffe_refresh_hint).toBe(600);
    expect(doc.keys).toHaveLength(1);
    expect(doc.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', use: 'jwt-svid', kid: issuer.currentKid });
    expect(doc.keys[0]).not.toHaveProperty('d');
    expect((await fetch(issuer.bundleUrl, { method: 'POST' })).status).toBe(405);
  });

  it('mints SVIDs the verifier accepts, only for its own trust domain', async () => {
    const token = await issuer.mint({ spiffeId: WORKLOAD, audience: AUD, ttlSeconds: 120, jti: 'run-1' });
    await expect(verifier.verify(token)).resolves.toMatchObject({
      spiffeId: WORKLOAD,
      trustDomain: 'demo.local',
      expiresAt: (Math.floor(clock.ms / 1000) + 120) * 1000,
    });
    await expect(issuer.mint({ spiffeId: 'spiffe://other.local/x', audience: AUD })).rejects.toThrow(/not in trust domain demo\.local/);
    await expect(issuer.mint({ spiffeId: 'spiffe://demo.local/x/', audience: AUD })).rejects.toThrow(/path-trailing-slash/);
  });

  it('picks up a key rotation without a restart', async () => {
    const before = await issuer.mint({ spiffeId: WORKLOAD, audience: AUD });
    await verifier.verify(before); // bundle cached with the first key
    const oldKid = issuer.currentKid;
    const newKid = await issuer.rotate();
    expect(newKid).not.toBe(oldKid);
    const after = await issuer.mint({ spiffeId: WORKLOAD, audience: AUD });

    // Within the rate limit the unknown kid is not re-fetched yet…
    const early = await verifier.verify(after).catch((e: unknown) => e);
    expect(early).toBeInstanceOf(DenialError);
    expect((early as DenialError).denial).toBe('svid-untrusted');
    expect((early as DenialError).message).toMatch(/rotation has not been published yet/);

    // …and once it may be, the new key is fetched and accepted; the old key still works.
    clock.advance(31_000);
    await expect(verifier.verify(after)).resolves.toMatchObject({ spiffeId: WORKLOAD });
    await expect(verifier.verify(before)).resolves.toMatchObject({ spiffeId: WORKLOAD });
    expect(bundles.statusOf('demo.local')).toMatchObject({ keyIds: [oldKid, newKid], sequence: 2 });
  });

  it('drops a retired key at the next refresh, and can switch algorithm', async () => {
    const old = await issuer.mint({ spiffeId: WORKLOAD, audience: AUD });
    const psKid = await issuer.rotate({ alg: 'PS256', dropPrevious: true });
    const ps = await issuer.mint({ spiffeId: WORKLOAD, audience: AUD });
    clock.advance(31_000);
    await expect(verifier.verify(ps)).resolves.toMatchObject({ spiffeId: WORKLOAD });
    expect(bundles.statusOf('demo.local')!.keyIds).toEqual([psKid]);
    await expect(verifier.verify(old)).rejects.toMatchObject({ denial: 'svid-untrusted' });
  });

  it('keeps the last good bundle when the endpoint goes down, and reports it', async () => {
    const token = await issuer.mint({ spiffeId: WORKLOAD, audience: AUD, ttlSeconds: 3600 });
    await issuer.close();
    clock.advance(601_000); // past the refresh hint: a refresh is attempted and fails
    await expect(verifier.verify(token)).resolves.toMatchObject({ spiffeId: WORKLOAD });
    const status = bundles.statusOf('demo.local')!;
    expect(status).toMatchObject({ loaded: true, stale: true });
    expect(status.lastError).toMatch(/cannot fetch http:\/\/127\.0\.0\.1:\d+\/: (ECONNREFUSED|UND_ERR_SOCKET|ECONNRESET) \(/);
    expect(errors.at(-1)).toBe(status.lastError);
  });
});
