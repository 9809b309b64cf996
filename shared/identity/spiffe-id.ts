/**
 * Strict SPIFFE ID parsing per the SPIFFE-ID standard (spiffe/spiffe standards/SPIFFE-ID.md §2).
 * Stricter than the standard where it leaves room: the scheme must be written lower-case, so one
 * identity has exactly one spelling and policy patterns can compare strings.
 */
import { TaskLeaseError } from '../lease/errors.ts';

/** The rule a rejected SPIFFE ID broke; stable, safe to log and to test against. */
export type SpiffeIdRule =
  | 'not-a-string'
  | 'empty'
  | 'max-length'
  | 'scheme'
  | 'query'
  | 'fragment'
  | 'trust-domain-missing'
  | 'userinfo'
  | 'port'
  | 'percent-encoding'
  | 'trust-domain-case'
  | 'trust-domain-chars'
  | 'trust-domain-length'
  | 'path-empty-segment'
  | 'path-dot-segment'
  | 'path-trailing-slash'
  | 'path-chars';

export class SpiffeIdError extends TaskLeaseError {
  constructor(
    readonly rule: SpiffeIdRule,
    message: string,
  ) {
    super('spiffe-id-invalid', message);
  }
}

const SCHEME_PREFIX = 'spiffe://';
/** §2.3: the whole URI, in bytes. */
export const MAX_SPIFFE_ID_BYTES = 2048;
/** §2.3: RFC 3986 caps the host at 255 characters. */
export const MAX_TRUST_DOMAIN_BYTES = 255;
const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const SEGMENT_CHARS = /^[a-zA-Z0-9._-]+$/;

/** A parsed, valid SPIFFE ID (frozen). `toString()` gives back the exact input. */
export interface SpiffeId {
  /** e.g. `example.org` */
  readonly trustDomain: string;
  /** `''` or `/seg/seg`; never a trailing slash. */
  readonly path: string;
  toString(): string;
  toJSON(): string;
}

function spiffeId(trustDomain: string, path: string): SpiffeId {
  const text = `${SCHEME_PREFIX}${trustDomain}${path}`;
  return Object.freeze({ trustDomain, path, toString: () => text, toJSON: () => text });
}

/** Quotes untrusted input for an error message: escaped and bounded. */
function quote(s: string): string {
  const shown = s.length > 80 ? `${s.slice(0, 80)}…` : s;
  return JSON.stringify(shown);
}

function fail(rule: SpiffeIdRule, input: string, why: string): never {
  throw new SpiffeIdError(rule, `${quote(input)} is not a valid SPIFFE ID: ${why} (rule: ${rule})`);
}

/** The first rule a bare trust domain name breaks, with a short reason. */
function trustDomainProblem(name: string): [SpiffeIdRule, string] | undefined {
  if (name.length === 0) return ['trust-domain-missing', 'the trust domain is empty'];
  if (name.includes('@')) return ['userinfo', 'userinfo ("user@") is not allowed in the trust domain'];
  if (name.startsWith('[')) return ['trust-domain-chars', 'IPv6 literals are not allowed as a trust domain'];
  if (name.includes(':')) return ['port', 'a port (or any ":") is not allowed in the trust domain'];
  if (name.includes('%')) return ['percent-encoding', 'percent-encoded characters are not allowed in the trust domain'];
  if (/[A-Z]/.test(name)) return ['trust-domain-case', 'the trust domain must be lower-case'];
  if (!TRUST_DOMAIN_CHARS.test(name)) return ['trust-domain-chars', 'the trust domain may only contain a-z, 0-9, ".", "-" and "_"'];
  if (name.length > MAX_TRUST_DOMAIN_BYTES)
    return ['trust-domain-length', `the trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`];
  return undefined;
}

/** Validates a bare trust domain name (`example.org`) and returns it; throws {@link SpiffeIdError}. */
export function parseTrustDomain(name: string): string {
  if (typeof name !== 'string') throw new SpiffeIdError('not-a-string', 'a trust domain must be a string (rule: not-a-string)');
  const problem = trustDomainProblem(name);
  if (problem) throw new SpiffeIdError(problem[0], `${quote(name)} is not a valid trust domain: ${problem[1]} (rule: ${problem[0]})`);
  return name;
}

/** Parses `spiffe://trust-domain/path`; throws {@link SpiffeIdError} naming the broken rule. */
export function parseSpiffeId(input: string): SpiffeId {
  if (typeof input !== 'string') throw new SpiffeIdError('not-a-string', 'a SPIFFE ID must be a string (rule: not-a-string)');
  if (input.length === 0) fail('empty', input, 'it is empty');
  if (Buffer.byteLength(input, 'utf8') > MAX_SPIFFE_ID_BYTES) fail('max-length', input, `it is longer than ${MAX_SPIFFE_ID_BYTES} bytes`);
  if (!input.startsWith(SCHEME_PREFIX)) {
    const why = input.toLowerCase().startsWith(SCHEME_PREFIX)
      ? 'the scheme must be written "spiffe://" in lower-case'
      : 'it must start with "spiffe://"';
    fail('scheme', input, why);
  }
  const rest = input.slice(SCHEME_PREFIX.length);
  // Whichever comes first ends the path in RFC 3986 terms; name that one.
  const q = rest.indexOf('?');
  const h = rest.indexOf('#');
  if (h !== -1 && (q === -1 || h < q)) fail('fragment', input, 'a fragment ("#…") is not allowed');
  if (q !== -1) fail('query', input, 'a query ("?…") is not allowed');

  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  const problem = trustDomainProblem(authority);
  if (problem) fail(problem[0], input, problem[1]);

  if (path !== '') {
    if (path.includes('%')) fail('percent-encoding', input, 'percent-encoded characters are not allowed in the path');
    const segments = path.split('/').slice(1);
    segments.forEach((segment, i) => {
      if (segment === '') {
        if (i === segments.length - 1) fail('path-trailing-slash', input, 'the path must not end with "/"');
        fail('path-empty-segment', input, 'the path must not contain empty segments ("//")');
      }
      if (segment === '.' || segment === '..') fail('path-dot-segment', input, 'the path must not contain "." or ".." segments');
      if (!SEGMENT_CHARS.test(segment)) fail('path-chars', input, 'path segments may only contain a-z, A-Z, 0-9, ".", "-" and "_"');
    });
  }
  return spiffeId(authority, path);
}

/** True when `value` is a string that {@link parseSpiffeId} accepts. */
export function isSpiffeId(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  try {
    parseSpiffeId(value);
    return true;
  } catch {
    return false;
  }
}
