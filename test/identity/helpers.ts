/** Test keys and hand-signed tokens for the identity tests. */
import { randomBytes } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { CryptoKey, JWK, JWTPayload } from 'jose';
import type { SpiffeBundleDocument } from '../../shared/identity/bundle.ts';
import type { JwtSvidAlgorithm } from '../../shared/identity/jwt-svid.ts';

export interface TestKey {
  alg: JwtSvidAlgorithm;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

export async function makeKey(alg: JwtSvidAlgorithm, kid = randomBytes(8).toString('hex')): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { alg, kid, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, use: 'jwt-svid' } };
}

export function bundleOf(keys: TestKey[], extra: Partial<SpiffeBundleDocument> = {}): SpiffeBundleDocument {
  return { spiffe_sequence: 1, keys: keys.map((k) => k.jwk), ...extra };
}

/** Signs `claims` with `key`; `header` replaces the default protected header entirely when given. */
export function sign(key: TestKey, claims: JWTPayload, header?: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader((header ?? { alg: key.alg, kid: key.kid, typ: 'JWT' }) as never).sign(key.privateKey);
}

export const b64url = (value: unknown): string =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** A mutable fake clock. */
export function fakeClock(start = Date.parse('2030-01-01T00:00:00Z')) {
  return {
    ms: start,
    now() {
      return this.ms;
    },
    get sec() {
      return Math.floor(this.ms / 1000);
    },
    advance(ms: number) {
      this.ms += ms;
    },
  };
}
