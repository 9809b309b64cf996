/**
 * The function bundles as the construct builds them (infra/bundling.ts: the same esbuild options
 * NodejsFunction gets), from the example AWS config: each at most BUNDLE_MAX_BYTES, carrying only
 * what the function can reach, and loadable by Node as Lambda loads it.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import type { Metafile } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLE_MAX_BYTES, bundleNeeds, esbuildOptions, kindSwitch } from '../../infra/bundling.ts';
import type { BundleNeeds } from '../../infra/bundling.ts';
import { loadConfig } from '../../shared/policy/config.ts';
import type { TaskLeaseConfig } from '../../shared/policy/config.ts';
import { ENV, FUNCTION_ENTRIES } from '../../shared/runtime/env.ts';
import { TARGET_KINDS } from '../../shared/targets/index.ts';
import { PROJECT_ROOT } from '../../infra/functions.ts';

const run = promisify(execFile);
const EXAMPLE = join(PROJECT_ROOT, 'examples/aws/tasklease.config.yaml');
const FUNCTIONS = Object.keys(FUNCTION_ENTRIES) as (keyof typeof FUNCTION_ENTRIES)[];
const outdir = mkdtempSync(join(tmpdir(), 'tasklease-bundles-'));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

interface Bundle {
  file: string;
  bytes: number;
  inputs: string[];
}

async function bundle(name: keyof typeof FUNCTION_ENTRIES, needs: BundleNeeds, tag: string): Promise<Bundle> {
  const o = esbuildOptions(needs);
  const outfile = join(outdir, tag, `${name}.mjs`);
  const { metafile } = await build({
    entryPoints: [join(PROJECT_ROOT, FUNCTION_ENTRIES[name])],
    bundle: true,
    outfile,
    minify: o.minify,
    format: o.format,
    platform: o.platform,
    target: o.target,
    mainFields: o.mainFields,
    banner: { js: o.banner },
    external: o.external,
    define: o.define,
    metafile: true,
    logLevel: 'silent',
  });
  const output = Object.values((metafile as Metafile).outputs).find((x) => x.entryPoint)!;
  return { file: outfile, bytes: statSync(outfile).size, inputs: Object.keys(output.inputs) };
}

const has = (b: Bundle, pkg: string) => b.inputs.some((i) => i.includes(`node_modules/${pkg}/`));

let config: TaskLeaseConfig;
const traced: Partial<Record<string, Bundle>> = {};
beforeAll(async () => {
  config = await loadConfig(EXAMPLE);
  for (const name of FUNCTIONS) traced[name] = await bundle(name, bundleNeeds(name, config, true), 'traced');
}, 120_000);

describe('function bundles of the example config', () => {
  it.each(FUNCTIONS)(`%s is at most ${BUNDLE_MAX_BYTES} bytes with the AWS SDK bundled in`, (name) => {
    const b = traced[name]!;
    expect(b.bytes).toBeLessThanOrEqual(BUNDLE_MAX_BYTES);
    expect(has(b, '@aws-sdk/client-dynamodb')).toBe(true);
    expect(has(b, '@aws-sdk/client-sts')).toBe(true);
  });

  it('carry only the target kinds the config uses: every other kind, and its client library, is left out', () => {
    const used = new Set(Object.values(config.targets).map((t) => t.kind));
    const unused = TARGET_KINDS.map((k) => k.kind).filter((k) => !used.has(k));
    // A registry line whose switch does not match kindSwitch() would bundle its kind regardless.
    expect(unused.sort()).toEqual(['mysql', 'rabbitmq', 'redis']);
    const registry = readFileSync(join(import.meta.dirname, '../../shared/targets/index.ts'), 'utf8');
    for (const kind of unused) expect(registry).toContain(`${kindSwitch(kind)} === 'off'`);
    for (const name of FUNCTIONS) {
      const b = traced[name]!;
      for (const kind of unused)
        expect(
          b.inputs.some((i) => i.startsWith(`shared/targets/${kind}/`)),
          `${name}: ${kind}`,
        ).toBe(false);
      for (const pkg of ['mysql2', 'ioredis', 'amqplib']) expect(has(b, pkg), `${name}: ${pkg}`).toBe(false);
      for (const kind of used)
        expect(
          b.inputs.some((i) => i.startsWith(`shared/targets/${kind}/`)),
          `${name}: ${kind}`,
        ).toBe(true);
    }
  });

  it('carry no YAML parser, no zod locales, no SSM client when no trust bundle is an SSM parameter', () => {
    for (const name of FUNCTIONS) {
      const b = traced[name]!;
      expect(has(b, 'yaml'), `${name}: yaml`).toBe(false);
      expect(
        b.inputs.some((i) => /node_modules\/zod\/.*locales\/(?!en\.)/.test(i)),
        `${name}: zod locales`,
      ).toBe(false);
      expect(has(b, '@aws-sdk/client-ssm'), `${name}: client-ssm`).toBe(false);
      expect(has(b, '@aws-lambda-powertools/parser'), `${name}: Powertools parser`).toBe(false);
    }
  });

  it('load in Node as Lambda loads them (ESM, top-level await), each exporting its handler', async () => {
    for (const name of FUNCTIONS) {
      const { stdout } = await run(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          'const m = await import(process.argv[1]); process.stdout.write(typeof m.handler);',
          pathToFileURL(traced[name]!.file).href,
        ],
        {
          cwd: outdir,
          env: {
            PATH: process.env.PATH,
            AWS_REGION: 'eu-west-1',
            [ENV.tableName]: 'ledger',
            [ENV.eventBusName]: 'bus',
            [ENV.config]: JSON.stringify(config),
            [ENV.secretsKmsKeyId]: 'alias/k',
            [ENV.reverifyQueueUrl]: 'https://sqs.eu-west-1.amazonaws.com/123456789012/q',
          },
          timeout: 30_000,
        },
      );
      expect(stdout, name).toBe('function');
    }
  }, 120_000);
});

describe('what a bundle carries follows the config and the props', () => {
  it('X-Ray off: no tracer and no X-Ray SDK in any bundle', async () => {
    for (const name of FUNCTIONS) {
      const b = await bundle(name, bundleNeeds(name, config, false), 'untraced');
      expect(has(b, 'aws-xray-sdk-core'), name).toBe(false);
      expect(has(b, '@aws-lambda-powertools/tracer'), name).toBe(false);
      expect(b.bytes).toBeLessThan(traced[name]!.bytes);
      expect(has(traced[name]!, 'aws-xray-sdk-core'), name).toBe(true);
    }
  }, 120_000);

  it('an SSM trust bundle: the SSM client only in the functions that verify SVIDs', async () => {
    const withSsm: TaskLeaseConfig = {
      ...config,
      trustDomains: { 'example.org': { ...config.trustDomains['example.org']!, bundle: { ssmParameter: '/tasklease/bundle' } } },
    };
    const needs = Object.fromEntries(FUNCTIONS.map((n) => [n, bundleNeeds(n, withSsm, true).ssm]));
    expect(needs).toEqual({ taskStarted: true, taskEnded: true, reverify: false, reaper: false, operator: false });
    const started = await bundle('taskStarted', bundleNeeds('taskStarted', withSsm, true), 'ssm');
    expect(has(started, '@aws-sdk/client-ssm')).toBe(true);
  }, 60_000);
});
