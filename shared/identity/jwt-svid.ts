/**
 * JWT-SVID validation per the JWT-SVID standard (spiffe/spiffe standards/JWT-SVID.md), with `jose`.
 *
 * The key is looked up in the bundle of the trust domain named by `sub` only, so a key of trust
 * domain A can never vouch for a `sub` in B. Every rejection is a DenialError whose message says
 * what to fix; no message ever contains the token.
 */
import { createHash } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, errors, importJWK, jwtVerify } from 'jose';
import type { JWTPayload, ProtectedHeaderParameters } from 'jose';
import { DenialError, TaskLeaseError } from '../lease/errors.ts';
import type { Clock, SvidVerifier, VerifiedWorkload } from '../lease/ports.ts';
import type { TrustBundleSet } from './bundle.ts';
import { SpiffeIdError, parseSpiffeId } from './spiffe-id.ts';
import type { SpiffeId } from './spiffe-id.ts';

/** JWT-SVID §2.1: RFC 7518 §3.3–3.5 only; `none` and every `HS*` are refused. */
export const JWT_SVID_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

/** JWT-SVID §2: any other header "MUST NOT be included" — and jku/jwk/x5u are key-injection vectors. */
const ALLOWED_HEADERS = new Set(['alg', 'kid', 'typ']);
const DEFAULT_MAX_TOKEN_LENGTH = 16 * 1024;

export interface JwtSvidVerifierOptions {
  /** The broker's audience; a token's `aud` must contain it. */
  audience: string;
  bundles: TrustBundleSet;
  clock?: Pick<Clock, 'now'>;
  /** Leeway for `exp`, `nbf` and `iat`, in seconds. Default 30. */
  clockSkewSeconds?: number;
  /** Longer tokens are refused before any parsing. Default 16384 characters. */
  maxTokenLength?: number;
  /**
   * Trust domains whose SVIDs must carry a `jti` (config `trustDomains.<td>.requireJti`); `true`
   * for all. Without a `jti`, two SVIDs minted with the same claims in the same second share one
   * replay key, so the second is refused as a replay. Default: none.
   */
  requireJti?: boolean | Iterable<string>;
}

const iso = (seconds: number): string => new Date(seconds * 1000).toISOString();
const invalid = (message: string): DenialError => new DenialError('svid-invalid', message);
const untrusted = (message: string): DenialError => new DenialError('svid-untrusted', message);

/** No good bundle was ever loaded for the trust domain: an infrastructure failure, retryable. */
export class TrustBundleUnavailableError extends TaskLeaseError {
  readonly retryable = true;
  constructor(message: string) {
    super('trust-bundle-unavailable', message);
  }
}

export class JwtSvidVerifier implements SvidVerifier {
  private readonly clock: Pick<Clock, 'now'>;
  private readonly skew: number;
  private readonly maxTokenLength: number;
  private readonly requireJti: (trustDomain: string) => boolean;

  constructor(private readonly options: JwtSvidVerifierOptions) {
    if (!options.audience) throw new TypeError('JwtSvidVerifier needs a non-empty audience');
    this.clock = options.clock ?? { now: () => Date.now() };
    this.skew = options.clockSkewSeconds ?? 30;
    this.maxTokenLength = options.maxTokenLength ?? DEFAULT_MAX_TOKEN_LENGTH;
    const required = options.requireJti;
    if (typeof required === 'boolean' || required === undefined) {
      const all = required === true;
      this.requireJti = () => all;
    } else {
      const domains = new Set(required);
      this.requireJti = (td) => domains.has(td);
    }
  }

  /** Verifies a JWT-SVID; throws DenialError `svid-invalid`, `svid-expired` or `svid-untrusted`. */
  async verify(token: string): Promise<VerifiedWorkload> {
    if (typeof token !== 'string' || token.length === 0) throw invalid('no JWT-SVID was supplied');
    if (token.length > this.maxTokenLength) throw invalid(`the JWT-SVID is longer than ${this.maxTokenLength} characters`);
    if (token.split('.').length !== 3) throw invalid('the SVID is not a JWT in JWS compact serialization (three dot-separated parts)');

    const header = this.checkHeader(token);
    const { claims, id } = this.readSubject(token);
    const { bundles, audience } = this.options;
    const trustDomain = id.trustDomain;
    if (!bundles.has(trustDomain)) {
      throw untrusted(
        `trust domain "${trustDomain}" of ${id} is not trusted (trusted: ${bundles.trustDomains().join(', ') || 'none'}); add its bundle to the config to federate with it`,
      );
    }

    const nowMs = this.clock.now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(
        token,
        // Key and `sub` always come from the same trust domain: only that domain's bundle is asked.
        async (h) => this.resolveKey(trustDomain, h.kid ?? '', h.alg),
        {
          algorithms: [...JWT_SVID_ALGORITHMS],
          audience,
          clockTolerance: this.skew,
          currentDate: new Date(nowMs),
          requiredClaims: ['exp', 'aud', 'sub'],
        },
      ));
    } catch (err) {
      throw this.explain(err, id, header.kid as string, claims);
    }

    const nowSec = Math.floor(nowMs / 1000);
    if (typeof payload.iat === 'number' && payload.iat > nowSec + this.skew) {
      throw invalid(
        `the JWT-SVID of ${id} claims to be issued at ${iso(payload.iat)}, in the future (now ${iso(nowSec)}, skew ${this.skew}s); check the issuer's clock`,
      );
    }
    if (payload.jti !== undefined && (typeof payload.jti !== 'string' || payload.jti === '')) {
      throw invalid(`the JWT-SVID of ${id} has a "jti" claim that is not a non-empty string`);
    }
    if (payload.jti === undefined && this.requireJti(trustDomain)) {
      throw invalid(
        `the JWT-SVID of ${id} has no "jti" claim, which trust domain ${trustDomain} requires (trustDomains.${trustDomain}.requireJti) ` +
          `so that each SVID is used once; have the issuer mint SVIDs with a unique jti, or turn requireJti off for ${trustDomain}`,
      );
    }
    return {
      spiffeId: id.toString(),
      trustDomain,
      replayKey: replayKey(trustDomain, payload),
      expiresAt: (payload.exp as number) * 1000,
    };
  }

  private checkHeader(token: string): ProtectedHeaderParameters {
    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw invalid('the JWT-SVID header is not base64url-encoded JSON');
    }
    const extra = Object.keys(header).filter((k) => !ALLOWED_HEADERS.has(k));
    if (extra.length > 0)
      throw invalid(`the JWT-SVID header carries ${extra.map((k) => `"${k}"`).join(', ')}; only alg, kid and typ are allowed`);
    if (!(JWT_SVID_ALGORITHMS as readonly unknown[]).includes(header.alg)) {
      throw invalid(
        `the JWT-SVID alg ${JSON.stringify(header.alg ?? null)} is not allowed; sign with one of ${JWT_SVID_ALGORITHMS.join(', ')}`,
      );
    }
    if (typeof header.kid !== 'string' || header.kid === '')
      throw invalid('the JWT-SVID header has no "kid"; the issuer must name the bundle key it signed with');
    if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE') {
      throw invalid(`the JWT-SVID typ ${JSON.stringify(header.typ)} is not allowed; use "JWT" or "JOSE" or leave it out`);
    }
    return header;
  }

  /** Reads `sub` before the signature check only to choose the trust domain whose keys must verify it. */
  private readSubject(token: string): { claims: JWTPayload; id: SpiffeId } {
    let claims: JWTPayload;
    try {
      claims = decodeJwt(token);
    } catch {
      throw invalid('the JWT-SVID payload is not base64url-encoded JSON object');
    }
    if (claims.sub === undefined) throw invalid('the JWT-SVID has no "sub" claim; it must be the workload\'s SPIFFE ID');
    if (typeof claims.sub !== 'string') throw invalid('the JWT-SVID "sub" claim is not a string');
    try {
      return { claims, id: parseSpiffeId(claims.sub) };
    } catch (err) {
      if (err instanceof SpiffeIdError) throw invalid(`the JWT-SVID "sub" is not a SPIFFE ID: ${err.message}`);
      throw err;
    }
  }

  private async resolveKey(trustDomain: string, kid: string, alg: string) {
    const { bundles } = this.options;
    const jwk = await bundles.getKey(trustDomain, kid);
    if (!jwk) {
      const status = bundles.statusOf(trustDomain);
      if (!status?.loaded) {
        // An outage of the bundle source says nothing about the SVID: retry, never deny for good.
        throw new TrustBundleUnavailableError(
          `the trust bundle of ${trustDomain} is not available (${status?.lastError ?? 'not loaded'}); fix the bundle source and retry`,
        );
      }
      throw untrusted(
        `key "${kid}" is not in the trust bundle of ${trustDomain} (known: ${status.keyIds.join(', ') || 'none'}); ` +
          `the SVID was signed by another issuer, or a rotation has not been published yet`,
      );
    }
    if (jwk.alg !== undefined && jwk.alg !== alg)
      throw invalid(`key "${kid}" of ${trustDomain} is for ${jwk.alg}, but the JWT-SVID says ${alg}`);
    try {
      return await importJWK(jwk, alg);
    } catch {
      throw invalid(`key "${kid}" of ${trustDomain} cannot verify ${alg} signatures (wrong key type or curve for that alg)`);
    }
  }

  /** Turns a jose failure into a denial a person can act on. */
  private explain(err: unknown, id: SpiffeId, kid: string, claims: JWTPayload): DenialError | TrustBundleUnavailableError {
    if (err instanceof DenialError || err instanceof TrustBundleUnavailableError) return err;
    const { audience } = this.options;
    if (err instanceof errors.JWTExpired) {
      const exp = typeof claims.exp === 'number' ? iso(claims.exp) : 'its exp';
      return new DenialError(
        'svid-expired',
        `the JWT-SVID of ${id} expired at ${exp} (now ${new Date(this.clock.now()).toISOString()}, skew ${this.skew}s); fetch a fresh SVID`,
      );
    }
    if (err instanceof errors.JWTClaimValidationFailed) {
      const claim = err.claim;
      if (err.reason === 'missing') return invalid(`the JWT-SVID of ${id} has no "${claim}" claim, which JWT-SVIDs require`);
      if (claim === 'aud') {
        const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
        return invalid(
          `the JWT-SVID of ${id} is for audience ${JSON.stringify(aud)}, not "${audience}"; mint it with audience "${audience}"`,
        );
      }
      if (claim === 'nbf' && typeof claims.nbf === 'number') {
        return invalid(
          `the JWT-SVID of ${id} is not valid before ${iso(claims.nbf)} (now ${new Date(this.clock.now()).toISOString()}, skew ${this.skew}s)`,
        );
      }
      return invalid(`the JWT-SVID of ${id} has an invalid "${claim}" claim (${err.reason})`);
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) {
      return invalid(
        `the JWT-SVID signature of ${id} does not verify with key "${kid}" of ${id.trustDomain}; the token was altered or signed by another key`,
      );
    }
    if (err instanceof errors.JOSEAlgNotAllowed) return invalid('the JWT-SVID alg is not allowed');
    if (err instanceof errors.JOSEError) return invalid(`the JWT-SVID of ${id} is malformed (${err.code})`);
    return invalid(`the JWT-SVID of ${id} could not be verified (${(err as Error)?.name ?? 'error'})`);
  }
}

/** The claims a replay key is made of; all are covered by the SVID's signature. */
export type ReplayClaims = Pick<JWTPayload, 'sub' | 'aud' | 'exp' | 'iat' | 'nbf' | 'jti'>;

/**
 * The replay key: sha256 over verified claims, never over the token's text. A copied token can be
 * re-encoded so that it still verifies (unused low bits of the signature's last base64url
 * character, padding or whitespace that decoders skip, ECDSA s → n − s), so only what the
 * signature covers may identify it. With a `jti` (RFC 7519's token identifier, unique per issuer):
 * the trust domain and `jti`. Without: the trust domain, `sub`, the set of audiences, `exp`,
 * `iat` and `nbf`.
 */
export function replayKey(trustDomain: string, claims: ReplayClaims): string {
  if (claims.jti !== undefined) {
    // Same material as before claims-only keys, so replay claims already in the ledger still hold.
    return sha256(`jti\0${trustDomain}\0${claims.jti}`);
  }
  // `"aud": "x"` and `"aud": ["x"]` name the same audience; order and repeats say nothing either.
  const aud = [...new Set(claims.aud === undefined ? [] : Array.isArray(claims.aud) ? claims.aud : [claims.aud])].sort();
  // A JSON array, so no claim value can imitate a delimiter.
  return sha256(
    JSON.stringify(['claims', trustDomain, claims.sub ?? null, aud, claims.exp ?? null, claims.iat ?? null, claims.nbf ?? null]),
  );
}

const sha256 = (material: string): string => createHash('sha256').update(material).digest('hex');
