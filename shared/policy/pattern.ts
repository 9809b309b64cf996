/*
 * SPIFFE ID patterns of policy rules.
 *
 * Semantics:
 *   - `spiffe://td/a/b`   exact: matches only the ID `spiffe://td/a/b`.
 *   - `spiffe://td/a/*`   prefix: matches IDs in trust domain `td` whose path starts with `/a/`
 *                         and has at least one more segment: `spiffe://td/a/b`, `spiffe://td/a/b/c`.
 *                         It does NOT match `spiffe://td/a` itself, nor `spiffe://td/ab`
 *                         (segments compare whole), nor `spiffe://other/a/b`.
 *   - `spiffe://td/*`     any workload of trust domain `td` (any ID with a non-empty path).
 * `*` is allowed only as the whole last segment; there are no other wildcards. Comparison is
 * exact and case-sensitive (trust domains are lower-case by the SPIFFE-ID standard).
 *
 * Specificity, used when several rules match: an exact pattern beats every prefix pattern;
 * among prefix patterns the one with more path segments wins. Two rules with the same pattern
 * are a config error, so the winner is always unique.
 */

import { parseSpiffeId, parseTrustDomain, SpiffeIdError } from '../identity/spiffe-id.ts';
import type { SpiffeId } from '../identity/spiffe-id.ts';

const SCHEME = 'spiffe://';

/** Trust-domain check for config keys, by the strict SPIFFE-ID parser; undefined when valid. */
export function checkTrustDomain(td: string): string | undefined {
  try {
    parseTrustDomain(td);
    return undefined;
  } catch (err) {
    if (err instanceof SpiffeIdError) return err.message;
    throw err;
  }
}

const PATTERN_HELP = 'must be a SPIFFE ID pattern: spiffe://<trust-domain>/<path> (exact) or spiffe://<trust-domain>/<path>/* (prefix)';

/**
 * Returns what is wrong with a rule's `spiffeId` pattern, or undefined. The pattern without its
 * `/*` must be a SPIFFE ID by the strict parser (shared/identity/spiffe-id.ts).
 */
export function checkSpiffePattern(pattern: string): string | undefined {
  const wildcard = pattern.endsWith('/*');
  const base = wildcard ? pattern.slice(0, -2) : pattern;
  if (base.includes('*')) return `${PATTERN_HELP}; "*" is allowed only as the whole last segment ("/*")`;
  let id: SpiffeId;
  try {
    id = parseSpiffeId(base);
  } catch (err) {
    if (err instanceof SpiffeIdError) return `${PATTERN_HELP}; ${wildcard ? 'without its "/*", ' : ''}${err.message}`;
    throw err;
  }
  if (!wildcard && id.path === '') {
    return `${PATTERN_HELP}; spiffe://${id.trustDomain} names the trust domain, not a workload (use spiffe://${id.trustDomain}/* to match every workload in it)`;
  }
  return undefined;
}

export interface CompiledPattern {
  readonly pattern: string;
  readonly trustDomain: string;
  readonly exact: boolean;
  /** Exact: the whole path (`/a/b`). Prefix: the fixed path with a trailing slash (`/a/`, or `/` for `td/*`). */
  readonly path: string;
  /** Higher is more specific. */
  readonly specificity: number;
}

/** Compiles a pattern that passed {@link checkSpiffePattern}. */
export function compilePattern(pattern: string): CompiledPattern {
  const problem = checkSpiffePattern(pattern);
  if (problem) throw new Error(problem);
  const rest = pattern.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const trustDomain = rest.slice(0, slash);
  const path = rest.slice(slash);
  if (path.endsWith('/*')) {
    const prefix = path.slice(0, -1); // keep the slash: `/a/` so that `/ab` cannot match
    const depth = prefix.split('/').length - 2; // `/` → 0, `/a/` → 1
    return { pattern, trustDomain, exact: false, path: prefix, specificity: depth };
  }
  // Exact beats any prefix, however deep.
  return { pattern, trustDomain, exact: true, path, specificity: Number.MAX_SAFE_INTEGER };
}

/** Parses a workload ID strictly; undefined when it is not a valid SPIFFE ID (which then matches nothing). */
export function parseWorkload(workload: string): SpiffeId | undefined {
  try {
    return parseSpiffeId(workload);
  } catch {
    return undefined;
  }
}

export function matchesPattern(p: CompiledPattern, workload: string | SpiffeId): boolean {
  const id = typeof workload === 'string' ? parseWorkload(workload) : workload;
  if (!id || id.trustDomain !== p.trustDomain || id.path === '') return false;
  if (p.exact) return id.path === p.path;
  // At least one more segment after the prefix (valid IDs have no empty segments).
  return id.path.length > p.path.length && id.path.startsWith(p.path);
}
