/**
 * SPIFFE trust bundles (spiffe/spiffe standards/SPIFFE_Trust_Domain_and_Bundle.md §4): one JWK set
 * per trust domain; several trust domains = federation. Only `use: "jwt-svid"` keys are kept.
 *
 * Bundles are loaded lazily, cached, refreshed after `spiffe_refresh_hint` seconds, and re-fetched
 * (at most once per `minRefetchIntervalMs` per domain) when a token names a `kid` we do not know, so
 * a key rotation needs no restart. A load that fails keeps the last good bundle and is reported
 * through `onError` and `status()`.
 */
import type { JWK } from 'jose';
import * as z from 'zod';
import { findKeyProblem } from '../events/strict-json.ts';
import { ConfigError, TaskLeaseError, describeError } from '../lease/errors.ts';
import type { Clock } from '../lease/ports.ts';
import { parseTrustDomain } from './spiffe-id.ts';

export { fileBundleSource, httpBundleSource, ssmBundleSource, staticBundleSource } from './bundle-sources.ts';
export type { HttpBundleSourceOptions } from './bundle-sources.ts';

/** A bundle could not be fetched or parsed. Messages name the source, never secret material. */
export class TrustBundleError extends TaskLeaseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('trust-bundle-error', message, options);
  }
}

/** Where one trust domain's bundle comes from. */
export interface BundleSource {
  /** For status and error messages, e.g. `file:/etc/bundle.json`. */
  readonly description: string;
  /** Returns the SPIFFE bundle document (a JWK set, JSON text). */
  load(): Promise<string>;
}

/** The SPIFFE bundle document, as published. */
export interface SpiffeBundleDocument {
  keys: JWK[];
  spiffe_sequence?: number;
  spiffe_refresh_hint?: number;
}

export interface ParsedBundle {
  /** `jwt-svid` public keys by `kid`. */
  keys: Map<string, JWK>;
  sequence?: number;
  refreshHintSeconds?: number;
}

export const MAX_BUNDLE_BYTES = 1024 * 1024;

const BundleSchema = z.looseObject({
  keys: z.array(z.unknown()),
  spiffe_sequence: z.number().int().optional(),
  spiffe_refresh_hint: z.number().int().nonnegative().optional(),
});

// Public members only: a private `d` (or anything else) in a published bundle is never used.
const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  EC: ['kty', 'kid', 'use', 'alg', 'crv', 'x', 'y'],
  RSA: ['kty', 'kid', 'use', 'alg', 'n', 'e'],
};

/**
 * Parses a SPIFFE bundle and keeps its `jwt-svid` keys. Keys of other uses (`x509-svid`), unknown
 * key types (including symmetric `oct` keys) and keys without a `kid` are ignored, as the standard
 * asks; a duplicate `kid` makes the whole bundle invalid.
 */
export function parseSpiffeBundle(document: string | unknown): ParsedBundle {
  let value: unknown = document;
  if (typeof document === 'string') {
    try {
      value = JSON.parse(document);
    } catch {
      throw new TrustBundleError('bundle is not valid JSON');
    }
    // Two "keys" (or two "kid"s in one key) would be read differently by other bundle consumers.
    const problem = findKeyProblem(document);
    if (problem)
      throw new TrustBundleError(
        `bundle has ${problem.kind === 'duplicate-key' ? 'a duplicate key' : 'a forbidden key'} at ${problem.path}`,
      );
  }
  const parsed = BundleSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TrustBundleError(`bundle is not a SPIFFE JWK set: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  const keys = new Map<string, JWK>();
  for (const raw of parsed.data.keys) {
    if (typeof raw !== 'object' || raw === null) continue;
    const jwk = raw as Record<string, unknown>;
    if (jwk.use !== 'jwt-svid' || typeof jwk.kty !== 'string') continue;
    const members = PUBLIC_MEMBERS[jwk.kty];
    if (!members || typeof jwk.kid !== 'string' || jwk.kid === '') continue;
    if (keys.has(jwk.kid)) throw new TrustBundleError(`bundle has two jwt-svid keys with kid ${JSON.stringify(jwk.kid)}`);
    const publicJwk: Record<string, unknown> = {};
    for (const m of members) if (jwk[m] !== undefined) publicJwk[m] = jwk[m];
    keys.set(jwk.kid, publicJwk as JWK);
  }
  return { keys, sequence: parsed.data.spiffe_sequence, refreshHintSeconds: parsed.data.spiffe_refresh_hint };
}

export interface TrustDomainBundleConfig {
  trustDomain: string;
  source: BundleSource;
  /** Overrides the bundle's own `spiffe_refresh_hint` (config `trustDomains.*.refreshHintSeconds`). */
  refreshHintSeconds?: number;
}

export interface TrustBundleSetOptions {
  domains: TrustDomainBundleConfig[];
  clock?: Pick<Clock, 'now'>;
  /** Refresh interval when a bundle has no `spiffe_refresh_hint`. Default 300 (the standard's suggestion). */
  defaultRefreshSeconds?: number;
  /** Upper bound on a bundle's refresh hint. Default 86400. */
  maxRefreshSeconds?: number;
  /** Least time between two fetches of one domain for an unknown `kid`, and between retries after a failure. Default 30000. */
  minRefetchIntervalMs?: number;
  /** Told about every failed load; the last good bundle stays in use. */
  onError?: (trustDomain: string, error: TrustBundleError) => void;
}

/** Health of one trust domain's bundle, for logs, metrics and a status page. */
export interface BundleStatus {
  trustDomain: string;
  source: string;
  /** A good bundle is in use (possibly stale, see `lastError`). */
  loaded: boolean;
  /** The last load attempt failed: the bundle in use (if any) is the last good one. */
  stale: boolean;
  keyIds: string[];
  sequence?: number;
  loadedAt?: number;
  lastAttemptAt?: number;
  nextRefreshAt?: number;
  lastError?: string;
}

interface DomainState {
  trustDomain: string;
  source: BundleSource;
  refreshHintSeconds?: number;
  bundle?: ParsedBundle;
  loadedAt?: number;
  lastAttemptAt?: number;
  nextRefreshAt: number;
  lastError?: string;
  inFlight?: Promise<boolean>;
}

/** The trust bundles of every trusted trust domain; what {@link JwtSvidVerifier} checks keys against. */
export class TrustBundleSet {
  private readonly domains = new Map<string, DomainState>();
  private readonly clock: Pick<Clock, 'now'>;
  private readonly defaultRefreshMs: number;
  private readonly maxRefreshMs: number;
  private readonly minRefetchMs: number;
  private readonly onError?: TrustBundleSetOptions['onError'];

  constructor(options: TrustBundleSetOptions) {
    this.clock = options.clock ?? { now: () => Date.now() };
    this.defaultRefreshMs = (options.defaultRefreshSeconds ?? 300) * 1000;
    this.maxRefreshMs = (options.maxRefreshSeconds ?? 86_400) * 1000;
    this.minRefetchMs = options.minRefetchIntervalMs ?? 30_000;
    this.onError = options.onError;
    for (const { trustDomain, source, refreshHintSeconds } of options.domains) {
      try {
        parseTrustDomain(trustDomain);
      } catch (err) {
        throw new ConfigError(`trust bundle config: ${(err as Error).message}`);
      }
      if (this.domains.has(trustDomain)) throw new ConfigError(`trust bundle config: trust domain ${trustDomain} is listed twice`);
      this.domains.set(trustDomain, { trustDomain, source, refreshHintSeconds, nextRefreshAt: 0 });
    }
  }

  /** The trusted trust domain names. */
  trustDomains(): string[] {
    return [...this.domains.keys()];
  }

  has(trustDomain: string): boolean {
    return this.domains.has(trustDomain);
  }

  /** Loads every bundle now (e.g. at start-up). Never throws: failures go to `onError`/`status()`. */
  async loadAll(): Promise<void> {
    await Promise.all([...this.domains.keys()].map((td) => this.refresh(td)));
  }

  /** Fetches one domain's bundle now; true when it loaded. Concurrent calls share one fetch. */
  refresh(trustDomain: string): Promise<boolean> {
    const state = this.domains.get(trustDomain);
    if (!state) return Promise.resolve(false);
    state.inFlight ??= this.doRefresh(state).finally(() => {
      state.inFlight = undefined;
    });
    return state.inFlight;
  }

  /**
   * The `jwt-svid` key `kid` of `trustDomain`, refreshing the bundle when its refresh time has come
   * or, rate-limited, when the kid is unknown (a rotation we have not seen yet).
   */
  async getKey(trustDomain: string, kid: string): Promise<JWK | undefined> {
    const state = this.domains.get(trustDomain);
    if (!state) return undefined;
    if (this.clock.now() >= state.nextRefreshAt) await this.refresh(trustDomain);
    const key = state.bundle?.keys.get(kid);
    if (key) return key;
    if (state.lastAttemptAt === undefined || this.clock.now() - state.lastAttemptAt >= this.minRefetchMs) {
      await this.refresh(trustDomain);
    }
    return state.bundle?.keys.get(kid);
  }

  status(): BundleStatus[] {
    return [...this.domains.keys()].map((td) => this.statusOf(td)!);
  }

  statusOf(trustDomain: string): BundleStatus | undefined {
    const s = this.domains.get(trustDomain);
    if (!s) return undefined;
    return {
      trustDomain: s.trustDomain,
      source: s.source.description,
      loaded: s.bundle !== undefined,
      stale: s.lastError !== undefined,
      keyIds: s.bundle ? [...s.bundle.keys.keys()] : [],
      sequence: s.bundle?.sequence,
      loadedAt: s.loadedAt,
      lastAttemptAt: s.lastAttemptAt,
      nextRefreshAt: s.lastAttemptAt === undefined ? undefined : s.nextRefreshAt,
      lastError: s.lastError,
    };
  }

  private async doRefresh(state: DomainState): Promise<boolean> {
    const startedAt = this.clock.now();
    state.lastAttemptAt = startedAt;
    try {
      const bundle = parseSpiffeBundle(await state.source.load());
      const hintSeconds = state.refreshHintSeconds ?? bundle.refreshHintSeconds;
      const hintMs = hintSeconds !== undefined ? hintSeconds * 1000 : this.defaultRefreshMs;
      state.bundle = bundle;
      state.loadedAt = startedAt;
      state.lastError = undefined;
      state.nextRefreshAt = startedAt + Math.min(Math.max(hintMs, this.minRefetchMs), this.maxRefreshMs);
      return true;
    } catch (err) {
      const why = err instanceof TrustBundleError ? err.message : describeError(err);
      const error = new TrustBundleError(`trust bundle for ${state.trustDomain} (${state.source.description}): ${why}`, { cause: err });
      state.lastError = error.message;
      state.nextRefreshAt = startedAt + this.minRefetchMs;
      try {
        this.onError?.(state.trustDomain, error);
      } catch {
        // A failing reporter must not break verification.
      }
      return false;
    }
  }
}
