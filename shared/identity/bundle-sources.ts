/** Where a trust bundle comes from: a file, an HTTPS endpoint, an SSM parameter, or a fixed document. */
import { readFile } from 'node:fs/promises';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { ConfigError } from '../lease/errors.ts';
import { MAX_BUNDLE_BYTES, TrustBundleError } from './bundle.ts';
import type { BundleSource, SpiffeBundleDocument } from './bundle.ts';

/** A bundle on disk (e.g. written by a SPIFFE agent or shipped with the config). */
export function fileBundleSource(path: string): BundleSource {
  return {
    description: `file:${path}`,
    async load() {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        throw new TrustBundleError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`, { cause: err });
      }
    },
  };
}

function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

export interface HttpBundleSourceOptions {
  /** For the whole exchange, body included. Default 5000. */
  timeoutMs?: number;
  /** Larger bodies are refused, and reading stops once past it. Default 1 MiB. */
  maxBytes?: number;
  fetch?: typeof fetch;
}

/**
 * A SPIFFE bundle endpoint (Web PKI authenticated). Must be `https:`; plain `http:` is allowed only
 * for loopback hosts (the local issuer). Redirects are refused so a bundle can't be downgraded.
 */
export function httpBundleSource(url: string, options: HttpBundleSourceOptions = {}): BundleSource {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(`bundle endpoint ${JSON.stringify(url)} is not a URL`);
  }
  if (parsed.username || parsed.password) throw new ConfigError('bundle endpoint URL must not carry credentials');
  const loopbackHttp = parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname);
  if (parsed.protocol !== 'https:' && !loopbackHttp) {
    throw new ConfigError(`bundle endpoint ${parsed.href} must use https (plain http only for loopback hosts)`);
  }
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? 5000;
  const maxBytes = options.maxBytes ?? MAX_BUNDLE_BYTES;
  const href = parsed.href;
  return {
    description: href,
    async load() {
      let res: Response;
      try {
        res = await doFetch(parsed, {
          headers: { accept: 'application/json' },
          // 'manual' rather than 'error': fetch reports a refused redirect as a bare TypeError.
          redirect: 'manual',
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        throw new TrustBundleError(`cannot fetch ${href}: ${fetchFailure(err, timeoutMs)}`, { cause: err });
      }
      if (res.status >= 300 && res.status < 400) {
        await discard(res);
        throw new TrustBundleError(
          `${href} answered HTTP ${res.status}, a redirect${redirectTarget(res, parsed)}; redirects are refused so a bundle cannot be ` +
            `swapped or downgraded on the way: configure the final https URL`,
        );
      }
      if (!res.ok) {
        await discard(res);
        throw new TrustBundleError(`${href} answered HTTP ${res.status}`);
      }
      const bytes = await readAtMost(res, maxBytes, href, timeoutMs);
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        throw new TrustBundleError(`${href} returned a body that is not UTF-8 (${bytes.byteLength} bytes, ${contentType(res)})`);
      }
      try {
        JSON.parse(text);
      } catch {
        // Never the body itself: an endpoint that went wrong may serve anything.
        throw new TrustBundleError(
          `${href} returned a body that is not JSON (${bytes.byteLength} bytes, ${contentType(res)}); a SPIFFE bundle endpoint serves a JWK set`,
        );
      }
      return text;
    },
  };
}

/** Reads the body, counting bytes, and stops (cancelling the stream) as soon as it passes `maxBytes`. */
async function readAtMost(res: Response, maxBytes: number, href: string, timeoutMs: number): Promise<Uint8Array> {
  const tooBig = () =>
    new TrustBundleError(`${href} returned more than ${maxBytes} bytes (the limit for a trust bundle); refused without reading the rest`);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await discard(res);
    throw tooBig();
  }
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw tooBig();
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof TrustBundleError) throw err;
    throw new TrustBundleError(`cannot read the body of ${href}: ${fetchFailure(err, timeoutMs)}`, { cause: err });
  } finally {
    reader.releaseLock();
  }
  return Buffer.concat(chunks, total);
}

/** fetch hides the reason in `cause` (ECONNREFUSED, a TLS error, …); the timeout is a TimeoutError. */
function fetchFailure(err: unknown, timeoutMs: number): string {
  if ((err as Error)?.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message.slice(0, 200)})` : ''}`;
  return `${(err as Error)?.name ?? 'error'}${cause?.message ? ` (${cause.message.slice(0, 200)})` : ''}`;
}

/** ` to https://host/path`: origin and path only, since a query string may carry anything. */
function redirectTarget(res: Response, base: URL): string {
  const location = res.headers.get('location');
  if (!location) return '';
  try {
    const to = new URL(location, base);
    return ` to ${`${to.origin}${to.pathname}`.slice(0, 200)}`;
  } catch {
    return ' (with an unparseable Location)';
  }
}

const contentType = (res: Response): string => `content-type ${JSON.stringify((res.headers.get('content-type') ?? 'none').slice(0, 100))}`;

/** Frees the connection without reading a body we will not use. */
async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/** A bundle kept in an SSM parameter (String or SecureString) holding the JSON document. */
export function ssmBundleSource(parameterName: string, options: { client?: SSMClient } = {}): BundleSource {
  let client = options.client;
  return {
    description: `ssm:${parameterName}`,
    async load() {
      // Loaded on first use so the local runtime never pulls in the AWS SDK.
      const { GetParameterCommand, SSMClient } = await import('@aws-sdk/client-ssm');
      client ??= new SSMClient({});
      let value: string | undefined;
      try {
        const out = await client.send(new GetParameterCommand({ Name: parameterName, WithDecryption: true }));
        value = out.Parameter?.Value;
      } catch (err) {
        throw new TrustBundleError(`cannot read SSM parameter ${parameterName}: ${(err as Error).name}`, { cause: err });
      }
      if (!value) throw new TrustBundleError(`SSM parameter ${parameterName} has no value`);
      return value;
    },
  };
}

/** A fixed bundle (tests, or a bundle embedded in the config). */
export function staticBundleSource(document: SpiffeBundleDocument | string, description = 'static'): BundleSource {
  const text = typeof document === 'string' ? document : JSON.stringify(document);
  return { description, load: async () => text };
}
