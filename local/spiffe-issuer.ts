/**
 * A local SPIFFE issuer for the demo and tests: it generates signing keys at start, serves its
 * SPIFFE bundle (JWKS) over plain HTTP on 127.0.0.1, and mints JWT-SVIDs for demo workloads.
 * It stands in for a SPIRE server; nothing here is meant for production.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import type { SpiffeBundleDocument } from '../shared/identity/bundle.ts';
import type { JwtSvidAlgorithm } from '../shared/identity/jwt-svid.ts';
import { parseSpiffeId, parseTrustDomain } from '../shared/identity/spiffe-id.ts';
import type { Clock } from '../shared/lease/ports.ts';

export interface LocalSpiffeIssuerOptions {
  trustDomain: string;
  /** Signing algorithm of the first key. Default ES256. */
  alg?: JwtSvidAlgorithm;
  /** Published as `spiffe_refresh_hint`. Default 60 seconds. */
  refreshHintSeconds?: number;
  clock?: Pick<Clock, 'now'>;
}

export interface MintOptions {
  /** Must belong to the issuer's trust domain. */
  spiffeId: string;
  audience: string | string[];
  /** Default 300. */
  ttlSeconds?: number;
  /**
   * Default: a fresh random one, so every SVID is its own (the replay key is the jti; without one
   * it is the claims, which two SVIDs minted in one second share). `null` omits it, as SPIRE does.
   */
  jti?: string | null;
}

interface SigningKey {
  kid: string;
  alg: JwtSvidAlgorithm;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function newKey(alg: JwtSvidAlgorithm): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = randomBytes(16).toString('base64url');
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, use: 'jwt-svid' };
  return { kid, alg, privateKey, publicJwk };
}

export class LocalSpiffeIssuer {
  private keys: SigningKey[];
  private sequence = 1;
  private readonly server: Server;
  private url = '';

  private constructor(
    readonly trustDomain: string,
    first: SigningKey,
    private readonly refreshHintSeconds: number,
    private readonly clock: Pick<Clock, 'now'>,
  ) {
    this.keys = [first];
    this.server = createServer((req, res) => {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const body = JSON.stringify(this.bundle());
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : body);
    });
  }

  /** Generates the first key and starts serving the bundle on a free loopback port. */
  static async start(options: LocalSpiffeIssuerOptions): Promise<LocalSpiffeIssuer> {
    const trustDomain = parseTrustDomain(options.trustDomain);
    const first = await newKey(options.alg ?? 'ES256');
    const issuer = new LocalSpiffeIssuer(trustDomain, first, options.refreshHintSeconds ?? 60, options.clock ?? { now: () => Date.now() });
    await new Promise<void>((resolve, reject) => {
      issuer.server.once('error', reject);
      issuer.server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = issuer.server.address() as AddressInfo;
    issuer.url = `http://127.0.0.1:${port}/`;
    return issuer;
  }

  /** Where the bundle is served: `http://127.0.0.1:<port>/`. */
  get bundleUrl(): string {
    return this.url;
  }

  /** The key new SVIDs are signed with. */
  get currentKid(): string {
    return this.keys[this.keys.length - 1]!.kid;
  }

  /** The SPIFFE bundle document being served. */
  bundle(): SpiffeBundleDocument {
    return {
      spiffe_sequence: this.sequence,
      spiffe_refresh_hint: this.refreshHintSeconds,
      keys: this.keys.map((k) => k.publicJwk),
    };
  }

  /** Mints a JWT-SVID signed by the current key. */
  async mint(options: MintOptions): Promise<string> {
    const id = parseSpiffeId(options.spiffeId);
    if (id.trustDomain !== this.trustDomain) {
      throw new Error(`${id} is not in trust domain ${this.trustDomain}; this issuer only mints for its own trust domain`);
    }
    const key = this.keys[this.keys.length - 1]!;
    const now = Math.floor(this.clock.now() / 1000);
    const jwt = new SignJWT({})
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setSubject(id.toString())
      .setAudience(options.audience)
      .setIssuedAt(now)
      .setExpirationTime(now + (options.ttlSeconds ?? 300));
    const jti = options.jti === undefined ? randomUUID() : options.jti;
    if (jti !== null) jwt.setJti(jti);
    return jwt.sign(key.privateKey);
  }

  /**
   * Rotates: a new key (same alg unless given) becomes the signing key and is published. The old
   * keys stay in the bundle, so SVIDs already minted keep verifying, unless `dropPrevious`.
   * Returns the new kid.
   */
  async rotate(options: { alg?: JwtSvidAlgorithm; dropPrevious?: boolean } = {}): Promise<string> {
    const key = await newKey(options.alg ?? this.keys[this.keys.length - 1]!.alg);
    this.keys = options.dropPrevious ? [key] : [...this.keys, key];
    this.sequence += 1;
    return key.kid;
  }

  /** Stops serving the bundle and drops open connections. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** Starts a {@link LocalSpiffeIssuer}. */
export function startSpiffeIssuer(options: LocalSpiffeIssuerOptions): Promise<LocalSpiffeIssuer> {
  return LocalSpiffeIssuer.start(options);
}
