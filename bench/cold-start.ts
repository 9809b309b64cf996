/**
 * Cold start of the Lambda functions: bundle each entry of FUNCTION_ENTRIES with exactly the
 * esbuild options the construct gives NodejsFunction (infra/bundling.ts, for the example AWS
 * config with tracing on), then import the bundle in fresh Node processes and time the module
 * initialisation.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import YAML from 'yaml';
import { bundleNeeds, esbuildOptions } from '../infra/bundling.ts';
import { loadConfig } from '../shared/policy/config.ts';
import { ENV, FUNCTION_ENTRIES } from '../shared/runtime/env.ts';

const execFileAsync = promisify(execFile);
const EXAMPLE_CONFIG = 'examples/aws/tasklease.config.yaml';
const ROOT = join(import.meta.dirname, '..');

export interface ColdStartEntry {
  function: string;
  entry: string;
  status: 'measured' | 'missing' | 'build-failed' | 'init-failed';
  /** sha256 of the bundle's inputs (the project's own files, by content): a changed handler gets a new hash. */
  inputsHash?: string;
  bundleBytes?: number;
  bundleGzipBytes?: number;
  sourceMapBytes?: number;
  /** Bytes in the bundle by package (or project directory), largest first. */
  byPackage?: Array<{ package: string; bytes: number }>;
  /** Module initialisation: `await import(bundle)` in a fresh node, each run (ms). */
  initMsRuns?: number[];
  initMsMedian?: number;
  /** Whole fresh process (node start + init + exit), median (ms): context for initMs. */
  processMsMedian?: number;
  /** The handler export's type after import ('function' expected). */
  handlerExport?: string;
  /** True when the entry is still a stub (throws "not built yet" or is tiny): figures are not the real handler's. */
  placeholder?: boolean;
  error?: string;
  /** The same entry bundled with LEAN_CHANGES applied on the fly (a measurement, not a build). */
  whatIf?: { changes: string[]; bundleBytes?: number; initMsMedian?: number; error?: string };
}

export interface ColdStartResult {
  esbuild: Record<string, unknown>;
  nodeVersion: string;
  lambdaRuntime: string;
  runs: number;
  note: string;
  functions: ColdStartEntry[];
}

/** Environment a deployed function gets (ENV in shared/runtime/env.ts), with harmless local values. */
function lambdaLikeEnv(): NodeJS.ProcessEnv {
  let config = '{}';
  try {
    // The demo config as JSON, as the construct passes it; no secret is in it (passwordSecret is a reference).
    const yamlPath = join(ROOT, 'tasklease.config.yaml');
    if (existsSync(yamlPath)) config = JSON.stringify(YAML.parse(readFileSync(yamlPath, 'utf8')));
  } catch {
    // leave '{}'
  }
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    AWS_REGION: 'eu-west-1',
    AWS_DEFAULT_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDBENCHONLY',
    AWS_SECRET_ACCESS_KEY: 'bench-only-not-a-secret',
    AWS_LAMBDA_FUNCTION_NAME: 'tasklease-bench',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '512',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    POWERTOOLS_SERVICE_NAME: 'tasklease',
    POWERTOOLS_DEV: 'false',
    [ENV.tableName]: 'tasklease-ledger',
    [ENV.eventBusName]: 'tasklease',
    [ENV.config]: config,
    [ENV.secretsKmsKeyId]: 'alias/tasklease-bench',
    [ENV.reverifyQueueUrl]: 'https://sqs.eu-west-1.amazonaws.com/000000000000/tasklease-reverify',
    [ENV.verifyDeadlineMs]: '30000',
  };
}

async function probeInit(
  file: string,
  cwd: string,
  runs: number,
): Promise<{ initRuns: number[]; processRuns: number[]; handlerExport?: string; error?: string }> {
  const initRuns: number[] = [];
  const processRuns: number[] = [];
  let handlerExport: string | undefined;
  let error: string | undefined;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    try {
      const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', PROBE, pathToFileURL(file).href], {
        env: lambdaLikeEnv(),
        cwd,
        timeout: 30_000,
      });
      processRuns.push(performance.now() - t0);
      const probe = JSON.parse(stdout) as { ms: number; handler: string; error?: string };
      initRuns.push(probe.ms);
      handlerExport = probe.handler;
      error = probe.error;
    } catch (err) {
      error = String(err instanceof Error ? err.message : err).split('\n')[0];
      break;
    }
  }
  return { initRuns, processRuns, handlerExport, error };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const r2 = (n: number) => Math.round(n * 100) / 100;

/** Imports `file` in a fresh node process; prints how long the import took. */
const PROBE = `
const t0 = performance.now();
let handler = 'none', error;
try { const m = await import(process.argv[1]); handler = typeof m.handler; } catch (e) { error = String(e && e.message || e).split('\\n')[0].slice(0, 300); }
const ms = performance.now() - t0;
process.stdout.write(JSON.stringify({ ms, handler, error }));
process.exit(0);
`;

export async function measureColdStart(opts: {
  runs?: number;
  outDir: string;
  progress?: (line: string) => void;
}): Promise<ColdStartResult> {
  const runs = opts.runs ?? 5;
  // The deployable example, as `npm run synth` and the README's deploy line use it.
  const config = await loadConfig(join(ROOT, EXAMPLE_CONFIG));
  const optionsOf = (name: keyof typeof FUNCTION_ENTRIES) => {
    const { banner, ...o } = esbuildOptions(bundleNeeds(name, config, true));
    return { ...o, bundle: true, sourcemap: 'external' as const, sourcesContent: false, banner: { js: banner } };
  };
  const functions: ColdStartEntry[] = [];
  await rm(opts.outDir, { recursive: true, force: true });
  for (const [name, entry] of Object.entries(FUNCTION_ENTRIES) as Array<[keyof typeof FUNCTION_ENTRIES, string]>) {
    const options = optionsOf(name);
    const abs = join(ROOT, entry);
    if (!existsSync(abs)) {
      functions.push({ function: name, entry, status: 'missing' });
      continue;
    }
    const dir = join(opts.outDir, name);
    await mkdir(dir, { recursive: true });
    const outfile = join(dir, 'index.mjs');
    let metafile;
    try {
      ({ metafile } = await build({ ...options, entryPoints: [abs], outfile, metafile: true, logLevel: 'silent' }));
    } catch (err) {
      functions.push({
        function: name,
        entry,
        status: 'build-failed',
        error: String(err instanceof Error ? err.message : err).split('\n')[0],
      });
      continue;
    }
    const hash = createHash('sha256');
    const inputs = Object.entries(metafile.inputs);
    for (const [input] of inputs.filter(([i]) => !i.includes('node_modules')).sort()) {
      hash
        .update(input)
        .update('\0')
        .update(readFileSync(join(ROOT, input)))
        .update('\0');
    }
    const output = Object.values(metafile.outputs).find((o) => o.entryPoint);
    const packages = new Map<string, number>();
    for (const [input, v] of Object.entries(output?.inputs ?? {})) {
      const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input)?.[1] ?? input.split('/').slice(0, 2).join('/');
      packages.set(pkg, (packages.get(pkg) ?? 0) + v.bytesInOutput);
    }
    const byPackage = [...packages.entries()]
      .map(([pkg, bytes]) => ({ package: pkg, bytes }))
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, 15);
    const code = readFileSync(outfile);
    const entrySource = readFileSync(abs, 'utf8');
    const placeholder = /not built yet/.test(entrySource) || code.length < 2_000;

    const { initRuns, processRuns, handlerExport, error } = await probeInit(outfile, dir, runs);
    const entryResult: ColdStartEntry = {
      function: name,
      entry,
      status: error ? 'init-failed' : 'measured',
      inputsHash: hash.digest('hex').slice(0, 16),
      bundleBytes: (await stat(outfile)).size,
      bundleGzipBytes: gzipSync(code).length,
      sourceMapBytes: existsSync(`${outfile}.map`) ? (await stat(`${outfile}.map`)).size : undefined,
      byPackage,
      initMsRuns: initRuns.map(r2),
      initMsMedian: initRuns.length ? r2(median(initRuns)) : undefined,
      processMsMedian: processRuns.length ? r2(median(processRuns)) : undefined,
      handlerExport,
      placeholder,
      ...(error ? { error } : {}),
    };
    functions.push(entryResult);
    opts.progress?.(
      `  ${name}: ${entryResult.bundleBytes} B${placeholder ? ' (placeholder entry)' : ''}, init median ${entryResult.initMsMedian ?? '—'} ms${error ? `, ${error}` : ''}`,
    );
  }
  return {
    esbuild: {
      ...optionsOf('taskStarted'),
      banner: 'ESM_REQUIRE_BANNER (infra/bundling.ts)',
      entryPoints: 'FUNCTION_ENTRIES (shared/runtime/env.ts)',
      config: EXAMPLE_CONFIG,
    },
    nodeVersion: process.version,
    lambdaRuntime: 'nodejs24.x (arm64)',
    runs,
    note:
      `Bundled with the options the construct gives NodejsFunction (infra/bundling.ts) for ${EXAMPLE_CONFIG} with tracing on: @aws-sdk/* bundled in, the SSM client only where an ssmParameter trust bundle needs it. ` +
      `Init = time for \`await import(bundle)\` in a fresh ${process.version} process, median of ${runs}; Lambda runs Node 24 on arm64, so absolute times differ. ` +
      'No --enable-source-maps (CDK does not set it). Bundle size is the .mjs without its external source map.',
    functions: functions.map((f) => ({ ...f, entry: relative(ROOT, join(ROOT, f.entry)) })),
  };
}
