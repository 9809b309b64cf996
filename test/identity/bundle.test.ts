import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetParameterCommand, ParameterNotFound, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  TrustBundleError,
  TrustBundleSet,
  fileBundleSource,
  httpBundleSource,
  parseSpiffeBundle,
  ssmBundleSource,
  staticBundleSource,
} from '../../shared/identity/bundle.ts';
import type { BundleSource } from '../../shared/identity/bundle.ts';
import { ConfigError } from '../../shared/lease/errors.ts';
import { bundleOf, fakeClock, makeKey } from './helpers.ts';
import type { TestKey } from './helpers.ts';

let k1: TestKey;
let k2: TestKey;
let dir: string;

beforeAll(async () => {
  k1 = await makeKey('ES256');
  k2 = await makeKey('RS256');
  dir = await mkdtemp(join(tmpdir(), 'tasklease-bundle-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A source whose document can be swapped, counting loads. */
function switchable(initial: unknown) {
  const src = {
    doc: initial as unknown,
    loads: 0,
    fail: undefined as Error | undefined,
    description: 'switchable',
    async load() {
      src.loads += 1;
      if (src.fail) throw src.fail;
      return JSON.stringify(src.doc);
    },
  };
  return src;
}

describe('parseSpiffeBundle', () => {
  it('keeps jwt-svid EC/RSA keys with a kid, and nothing private', () => {
    const doc = {
      spiffe_sequence: 7,
      spiffe_refresh_hint: 120,
      keys: [
        { ...k1.jwk, d: 'private-part-must-go', ext: true },
        k2.jwk,
        { kty: 'EC', use: 'x509-svid', crv: 'P-256', x: 'x', y: 'y', x5c: ['MII…'] }, // X.509 authority: ignored
        { kty: 'oct', use: 'jwt-svid', kid: 'sym', k: 'c2VjcmV0' }, // symmetric: ignored
        { kty: 'OKP', use: 'jwt-svid', kid: 'ed', crv: 'Ed25519', x: 'x' }, // not a JWT-SVID alg: ignored
        { ...k1.jwk, kid: undefined }, // no kid: cannot be selected
        { ...k1.jwk, use: undefined, kid: 'no-use' }, // `use` is required
        'not an object',
      ],
    };
    const parsed = parseSpiffeBundle(JSON.stringify(doc));
    expect([...parsed.keys.keys()]).toEqual([k1.kid, k2.kid]);
    expect(parsed.keys.get(k1.kid)).toEqual({ kty: 'EC', kid: k1.kid, use: 'jwt-svid', crv: 'P-256', x: k1.jwk.x, y: k1.jwk.y });
    expect(parsed.sequence).toBe(7);
    expect(parsed.refreshHintSeconds).toBe(120);
  });

  it('rejects a document with duplicate keys, which other consumers would read differently', () => {
    const good = JSON.stringify(bundleOf([k1]));
    expect(() => parseSpiffeBundle(good.replace('"keys":', '"keys":[],"keys":'))).toThrow('bundle has a duplicate key at keys');
    expect(() => parseSpiffeBundle(good.replace('"kid":', '"kid":"other","kid":'))).toThrow('bundle has a duplicate key at keys[0].kid');
    expect(parseSpiffeBundle(good).keys.has(k1.kid)).toBe(true);
  });

  it('rejects documents that are not SPIFFE bundles', () => {
    expect(() => parseSpiffeBundle('{not json')).toThrow(/not valid JSON/);
    expect(() => parseSpiffeBundle({})).toThrow(/keys/);
    expect(() => parseSpiffeBundle({ keys: [], spiffe_refresh_hint: 'soon' })).toThrow(/spiffe_refresh_hint/);
    expect(() => parseSpiffeBundle({ keys: [k1.jwk, { ...k2.jwk, kid: k1.kid }] })).toThrow(TrustBundleError);
    expect(parseSpiffeBundle({ keys: [] }).keys.size).toBe(0);
  });
});

describe('TrustBundleSet', () => {
  it('validates its config', () => {
    const source = staticBundleSource({ keys: [] });
    expect(() => new TrustBundleSet({ domains: [{ trustDomain: 'Bad.Domain', source }] })).toThrow(ConfigError);
    expect(
      () =>
        new TrustBundleSet({
          domains: [
            { trustDomain: 'a.example', source },
            { trustDomain: 'a.example', source },
          ],
        }),
    ).toThrow(/twice/);
  });

  it('federates: each trust domain has its own keys', async () => {
    const set = new TrustBundleSet({
      domains: [
        { trustDomain: 'a.example', source: staticBundleSource(bundleOf([k1])) },
        { trustDomain: 'b.example', source: staticBundleSource(bundleOf([k2])) },
      ],
    });
    expect(set.trustDomains()).toEqual(['a.example', 'b.example']);
    expect(await set.getKey('a.example', k1.kid)).toMatchObject({ kid: k1.kid });
    expect(await set.getKey('a.example', k2.kid)).toBeUndefined();
    expect(await set.getKey('b.example', k2.kid)).toMatchObject({ kid: k2.kid });
    expect(await set.getKey('c.example', k1.kid)).toBeUndefined();
    expect(set.has('c.example')).toBe(false);
  });

  it('refreshes per spiffe_refresh_hint', async () => {
    const clock = fakeClock();
    const src = switchable(bundleOf([k1], { spiffe_refresh_hint: 120 }));
    const set = new TrustBundleSet({ clock, domains: [{ trustDomain: 'a.example', source: src }] });
    await set.getKey('a.example', k1.kid);
    expect(src.loads).toBe(1);
    clock.advance(119_000);
    await set.getKey('a.example', k1.kid);
    expect(src.loads).toBe(1);
    src.doc = bundleOf([k2], { spiffe_refresh_hint: 120, spiffe_sequence: 2 });
    clock.advance(1_000);
    expect(await set.getKey('a.example', k1.kid)).toBeUndefined(); // k1 was removed from the bundle
    expect(await set.getKey('a.example', k2.kid)).toMatchObject({ kid: k2.kid });
    expect(src.loads).toBe(2);
    expect(set.statusOf('a.example')).toMatchObject({ sequence: 2, keyIds: [k2.kid], nextRefreshAt: clock.ms + 120_000 });
  });

  it("a configured refreshHintSeconds overrides the bundle's own hint", async () => {
    const clock = fakeClock();
    const src = switchable(bundleOf([k1], { spiffe_refresh_hint: 120 }));
    const set = new TrustBundleSet({ clock, domains: [{ trustDomain: 'a.example', source: src, refreshHintSeconds: 600 }] });
    await set.getKey('a.example', k1.kid);
    expect(set.statusOf('a.example')).toMatchObject({ nextRefreshAt: clock.ms + 600_000 });
    clock.advance(300_000);
    await set.getKey('a.example', k1.kid);
    expect(src.loads).toBe(1);
  });

  it('without a hint refreshes after the default, and clamps tiny hints to the refetch interval', async () => {
    const clock = fakeClock();
    const noHint = switchable(bundleOf([k1]));
    const tiny = switchable(bundleOf([k1], { spiffe_refresh_hint: 0 }));
    const set = new TrustBundleSet({
      clock,
      defaultRefreshSeconds: 300,
      domains: [
        { trustDomain: 'a.example', source: noHint },
        { trustDomain: 'b.example', source: tiny },
      ],
    });
    await set.loadAll();
    expect(set.statusOf('a.example')!.nextRefreshAt).toBe(clock.ms + 300_000);
    expect(set.statusOf('b.example')!.nextRefreshAt).toBe(clock.ms + 30_000);
    await set.getKey('b.example', k1.kid);
    expect(tiny.loads).toBe(1);
  });

  it('re-fetches on an unknown kid, at most once per interval', async () => {
    const clock = fakeClock();
    const src = switchable(bundleOf([k1], { spiffe_refresh_hint: 3600 }));
    const set = new TrustBundleSet({ clock, domains: [{ trustDomain: 'a.example', source: src }] });
    await set.getKey('a.example', k1.kid);
    src.doc = bundleOf([k1, k2], { spiffe_refresh_hint: 3600 });
    clock.advance(10_000);
    expect(await set.getKey('a.example', k2.kid)).toBeUndefined(); // too soon after the last fetch
    expect(await set.getKey('a.example', 'junk')).toBeUndefined();
    expect(src.loads).toBe(1);
    clock.advance(20_000);
    expect(await set.getKey('a.example', k2.kid)).toMatchObject({ kid: k2.kid });
    expect(src.loads).toBe(2);
  });

  it('shares one fetch between concurrent callers', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let loads = 0;
    const source: BundleSource = {
      description: 'slow',
      load: async () => {
        loads += 1;
        await gate;
        return JSON.stringify(bundleOf([k1]));
      },
    };
    const set = new TrustBundleSet({ domains: [{ trustDomain: 'a.example', source }] });
    const pending = Promise.all(Array.from({ length: 5 }, () => set.getKey('a.example', k1.kid)));
    release();
    expect((await pending).every((k) => k?.kid === k1.kid)).toBe(true);
    expect(loads).toBe(1);
  });

  it('keeps the last good bundle when a load fails, and reports it', async () => {
    const clock = fakeClock();
    const errors: string[] = [];
    const src = switchable(bundleOf([k1], { spiffe_refresh_hint: 60 }));
    const set = new TrustBundleSet({
      clock,
      domains: [{ trustDomain: 'a.example', source: src }],
      onError: (td, e) => errors.push(`${td}|${e.message}`),
    });
    await set.getKey('a.example', k1.kid);
    src.fail = new Error('connection reset');
    clock.advance(60_000);
    expect(await set.getKey('a.example', k1.kid)).toMatchObject({ kid: k1.kid });
    expect(errors).toEqual(['a.example|trust bundle for a.example (switchable): Error: connection reset']);
    expect(set.statusOf('a.example')).toMatchObject({
      loaded: true,
      stale: true,
      keyIds: [k1.kid],
      lastError: expect.stringContaining('connection reset'),
    });
    // Retries after the refetch interval, not on every call.
    clock.advance(10_000);
    await set.getKey('a.example', k1.kid);
    expect(src.loads).toBe(2);
    clock.advance(20_000);
    src.fail = undefined;
    await set.getKey('a.example', k1.kid);
    expect(src.loads).toBe(3);
    expect(set.statusOf('a.example')).toMatchObject({ loaded: true, stale: false, lastError: undefined });
  });

  it('a throwing onError does not break key lookup', async () => {
    const set = new TrustBundleSet({
      domains: [{ trustDomain: 'a.example', source: { description: 'x', load: () => Promise.reject(new Error('down')) } }],
      onError: () => {
        throw new Error('reporter broke');
      },
    });
    await expect(set.getKey('a.example', k1.kid)).resolves.toBeUndefined();
    expect(set.status()).toEqual([expect.objectContaining({ trustDomain: 'a.example', loaded: false, stale: true })]);
  });
});

describe('fileBundleSource', () => {
  it('loads a bundle file, keeps the last good one when the file turns bad, picks up a fixed file', async () => {
    const path = join(dir, 'a.json');
    await writeFile(path, JSON.stringify(bundleOf([k1])));
    const errors: string[] = [];
    const set = new TrustBundleSet({
      domains: [{ trustDomain: 'a.example', source: fileBundleSource(path) }],
      onError: (_td, e) => errors.push(e.message),
    });
    expect(await set.getKey('a.example', k1.kid)).toMatchObject({ kid: k1.kid });

    await writeFile(path, '{"keys": [truncated');
    expect(await set.refresh('a.example')).toBe(false);
    expect(await set.getKey('a.example', k1.kid)).toMatchObject({ kid: k1.kid });
    expect(errors).toEqual([`trust bundle for a.example (file:${path}): bundle is not valid JSON`]);

    await writeFile(path, JSON.stringify(bundleOf([k1, k2])));
    expect(await set.refresh('a.example')).toBe(true);
    expect(set.statusOf('a.example')).toMatchObject({ source: `file:${path}`, keyIds: [k1.kid, k2.kid], stale: false });
  });

  it('reports a missing file by its error code', async () => {
    const path = join(dir, 'missing.json');
    const set = new TrustBundleSet({ domains: [{ trustDomain: 'a.example', source: fileBundleSource(path) }] });
    await set.loadAll();
    expect(set.statusOf('a.example')!.lastError).toBe(`trust bundle for a.example (file:${path}): cannot read ${path}: ENOENT`);
  });
});

describe('httpBundleSource', () => {
  it('allows https anywhere and plain http only on loopback', () => {
    expect(httpBundleSource('https://bundle.example/keys').description).toBe('https://bundle.example/keys');
    expect(() => httpBundleSource('http://127.0.0.1:8443/')).not.toThrow();
    expect(() => httpBundleSource('http://localhost:8443/')).not.toThrow();
    expect(() => httpBundleSource('http://[::1]:8443/')).not.toThrow();
    expect(() => httpBundleSource('http://bundle.example/')).toThrow(/must use https/);
    expect(() => httpBundleSource('http://127.0.0.1.nip.io/')).toThrow(/must use https/);
    expect(() => httpBundleSource('ftp://bundle.example/')).toThrow(ConfigError);
    expect(() => httpBundleSource('https://user:pw@bundle.example/')).toThrow(/must not carry credentials/);
    expect(() => httpBundleSource('not a url')).toThrow(/not a URL/);
  });

  it('fetches with redirects refused and reports HTTP errors', async () => {
    const calls: Array<[string, RequestInit | undefined]> = [];
    let status = 200;
    const fakeFetch = (async (url: URL, init?: RequestInit) => {
      calls.push([url.toString(), init]);
      return new Response(JSON.stringify(bundleOf([k1])), { status });
    }) as unknown as typeof fetch;
    const source = httpBundleSource('https://bundle.example/keys', { fetch: fakeFetch });
    expect(parseSpiffeBundle(await source.load()).keys.has(k1.kid)).toBe(true);
    expect(calls[0]![0]).toBe('https://bundle.example/keys');
    expect(calls[0]![1]).toMatchObject({ redirect: 'manual' });
    status = 503;
    await expect(source.load()).rejects.toThrow('https://bundle.example/keys answered HTTP 503');
  });
});

describe('httpBundleSource against a real HTTP server', () => {
  const servers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    await Promise.all(servers.map((close) => close()));
  });

  /** A loopback server on a free port; `handle` answers every request. */
  async function serve(handle: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>): Promise<string> {
    const server = createServer((req, res) => void handle(req, res));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/bundle`;
  }

  const MB = 1024 * 1024;

  /** Streams up to `total` bytes of JSON-ish filler; resolves with what the socket took before the client hung up. */
  function streamHuge(res: ServerResponse, total: number, headers: Record<string, string | number> = {}): Promise<number> {
    return new Promise((resolve) => {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let written = 0;
      let closed = false;
      res.on('close', () => {
        closed = true;
        resolve(written);
      });
      const pump = () => {
        while (!closed && written < total) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        if (!closed) res.end();
      };
      res.write('{"keys":[],"pad":"');
      pump();
    });
  }

  it('stops reading a 64 MB body soon after the limit, without a content-length', async () => {
    let wrote: Promise<number> = Promise.resolve(0);
    const url = await serve((_req, res) => {
      wrote = streamHuge(res, 64 * MB);
    });
    const source = httpBundleSource(url);
    const started = Date.now();
    await expect(source.load()).rejects.toThrow(
      `${url} returned more than ${MB} bytes (the limit for a trust bundle); refused without reading the rest`,
    );
    const written = await wrote;
    // What the socket accepted before the client hung up: the limit plus socket buffers, not 64 MB.
    expect(written).toBeGreaterThan(MB);
    expect(written).toBeLessThan(16 * MB);
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it('refuses a declared content-length over the limit before reading the body', async () => {
    let wrote: Promise<number> = Promise.resolve(0);
    const url = await serve((_req, res) => {
      wrote = streamHuge(res, 64 * MB, { 'content-length': 64 * MB + 18 });
    });
    await expect(httpBundleSource(url, { maxBytes: 4096 }).load()).rejects.toThrow(/returned more than 4096 bytes/);
    expect(await wrote).toBeLessThan(16 * MB);
  });

  it('counts bytes, not characters', async () => {
    // 600 × "é" is 600 characters but 1200 bytes in UTF-8.
    const doc = JSON.stringify({ ...bundleOf([k1]), note: 'é'.repeat(600) });
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(doc);
    });
    const bytes = Buffer.byteLength(doc);
    expect(doc.length).toBeLessThan(bytes - 500);
    await expect(httpBundleSource(url, { maxBytes: doc.length + 100 }).load()).rejects.toThrow(
      `returned more than ${doc.length + 100} bytes`,
    );
    // At exactly its byte size it is fine, and the text arrives intact.
    const text = await httpBundleSource(url, { maxBytes: bytes }).load();
    expect(text).toBe(doc);
    expect(parseSpiffeBundle(text).keys.has(k1.kid)).toBe(true);
  });

  it('refuses a redirect with a reason naming it (not a bare TypeError), without following it', async () => {
    let followed = 0;
    const target = await serve((_req, res) => {
      followed += 1;
      res.end(JSON.stringify(bundleOf([k2])));
    });
    const url = await serve((_req, res) => {
      res.writeHead(302, { location: `${target}?token=secret-looking-value` });
      res.end();
    });
    const err = await httpBundleSource(url)
      .load()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustBundleError);
    expect((err as Error).message).toBe(
      `${url} answered HTTP 302, a redirect to ${target}; redirects are refused so a bundle cannot be swapped or downgraded on the way: configure the final https URL`,
    );
    expect((err as Error).message).not.toContain('secret-looking-value');
    expect(followed).toBe(0);
  });

  it('names a body that is not JSON, never quoting it', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>captive portal: sign in</html>');
    });
    const err = await httpBundleSource(url)
      .load()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrustBundleError);
    expect((err as Error).message).toBe(
      `${url} returned a body that is not JSON (36 bytes, content-type "text/html"); a SPIFFE bundle endpoint serves a JWK set`,
    );
  });

  it('names a body that is not UTF-8', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]));
    });
    await expect(httpBundleSource(url).load()).rejects.toThrow(
      `${url} returned a body that is not UTF-8 (4 bytes, content-type "application/json")`,
    );
  });

  it('says when the endpoint stalls past the timeout, mid-body included', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"keys":');
    });
    await expect(httpBundleSource(url, { timeoutMs: 300 }).load()).rejects.toThrow(
      `cannot read the body of ${url}: no answer within 300 ms`,
    );
  });

  it('reports the status of a failing endpoint and loads a good one through TrustBundleSet', async () => {
    let status = 500;
    const url = await serve((_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(status === 200 ? JSON.stringify(bundleOf([k1])) : '{"error":"down"}');
    });
    const set = new TrustBundleSet({ domains: [{ trustDomain: 'a.example', source: httpBundleSource(url) }], minRefetchIntervalMs: 0 });
    await set.loadAll();
    expect(set.statusOf('a.example')!.lastError).toBe(`trust bundle for a.example (${url}): ${url} answered HTTP 500`);
    status = 200;
    expect(await set.refresh('a.example')).toBe(true);
    expect(set.statusOf('a.example')!.keyIds).toEqual([k1.kid]);
  });
});

describe('ssmBundleSource', () => {
  const ssm = mockClient(SSMClient);
  afterEach(() => ssm.reset());

  it('reads the bundle from the parameter with decryption', async () => {
    ssm.on(GetParameterCommand).resolves({ Parameter: { Name: '/tasklease/bundles/a.example', Value: JSON.stringify(bundleOf([k1])) } });
    const set = new TrustBundleSet({
      domains: [
        {
          trustDomain: 'a.example',
          source: ssmBundleSource('/tasklease/bundles/a.example', { client: new SSMClient({ region: 'eu-west-1' }) }),
        },
      ],
    });
    expect(await set.getKey('a.example', k1.kid)).toMatchObject({ kid: k1.kid });
    const calls = ssm.commandCalls(GetParameterCommand);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.args[0].input).toEqual({ Name: '/tasklease/bundles/a.example', WithDecryption: true });
    expect(set.statusOf('a.example')!.source).toBe('ssm:/tasklease/bundles/a.example');
  });

  it('keeps the last good bundle when the parameter goes away', async () => {
    const clock = fakeClock();
    ssm
      .on(GetParameterCommand)
      .resolvesOnce({ Parameter: { Value: JSON.stringify(bundleOf([k1], { spiffe_refresh_hint: 60 })) } })
      .rejects(new ParameterNotFound({ message: 'not found', $metadata: {} }));
    const set = new TrustBundleSet({
      clock,
      domains: [{ trustDomain: 'a.example', source: ssmBundleSource('/b/a', { client: new SSMClient({ region: 'eu-west-1' }) }) }],
    });
    await set.loadAll();
    clock.advance(60_000);
    expect(await set.getKey('a.example', k1.kid)).toMatchObject({ kid: k1.kid });
    expect(set.statusOf('a.example')).toMatchObject({
      stale: true,
      lastError: 'trust bundle for a.example (ssm:/b/a): cannot read SSM parameter /b/a: ParameterNotFound',
    });
  });

  it('rejects an empty parameter', async () => {
    ssm.on(GetParameterCommand).resolves({ Parameter: {} });
    await expect(ssmBundleSource('/b/a', { client: new SSMClient({ region: 'eu-west-1' }) }).load()).rejects.toThrow(
      'SSM parameter /b/a has no value',
    );
  });
});
