/**
 * Cold start of the Lambda functions: bundle each entry of FUNCTION_ENTRIES that exists with
 * esbuild the way the CDK NodejsFunction does (infra/task-lease.ts `bundling`), then import the
 * bundle in fresh Node processes and time the module initialisation.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import type { Plugin } from 'esbuild';
import YAML from 'yaml';
import { ENV, FUNCTION_ENTRIES } from '../shared/runtime/env.ts';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '..');

/** infra/task-lease.ts ESM_REQUIRE_BANNER, read from the source so the two cannot drift; this copy is the fallback. */
const FALLBACK_BANNER =
  "import { createRequire as __taskleaseCreateRequire } from 'node:module';const require = __taskleaseCreateRequire(import.meta.url);";

function infraBanner(): { banner: string; from: string } {
  try {
    const src = readFileSync(join(ROOT, 'infra', 'task-lease.ts'), 'utf8');
    const m = /const ESM_REQUIRE_BANNER\s*=\s*(["'])(.*?)\1;/.exec(src);
    if (m?.[2]) return { banner: m[2], from: 'infra/task-lease.ts' };
  } catch {
    // infra not present: use the copy
  }
  return { banner: FALLBACK_BANNER, from: 'bench/cold-start.ts (copy)' };
}

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

const LEAN_CHANGES = [
  "zod is imported as a namespace (`import * as z from 'zod'`) everywhere in the bundle, so esbuild can drop zod's ~260 kB of locales it never uses: in shared/ and functions/ that is a one-line change per file; functions/lib/sqs.ts would validate the EventBridge envelope with its own small zod schema instead of @aws-lambda-powertools/parser's EventBridgeSchema, whose `import { z } from 'zod'` alone keeps every locale (emulated here by rewriting that import)",
  "the YAML parser stays out of Lambda bundles (shared/policy/config.ts's file loading split into a module the functions do not import; they get the config as JSON)",
];

/** esbuild plugin emulating LEAN_CHANGES: rewrites the zod import in project files, stubs `yaml`. */
const leanPlugin: Plugin = {
  name: 'tasklease-bench-lean',
  setup(b) {
    b.onResolve({ filter: /^yaml$/ }, () => ({ path: 'yaml', namespace: 'lean-stub' }));
    b.onLoad({ filter: /.*/, namespace: 'lean-stub' }, () => ({
      contents: [
        "const no = () => { throw new Error('yaml is not bundled'); };",
        'export class LineCounter { constructor() { no(); } }',
        'export class Document { constructor() { no(); } }',
        'export const parse = no, parseDocument = no, stringify = no, isNode = no, isMap = no, isSeq = no, isScalar = no;',
        'export default { parse, parseDocument, stringify };',
      ].join('\n'),
      loader: 'js',
    }));
    const namespaceZod = (src: string) => src.replace(/import \{ z \} from (['"])zod\1;?/g, "import * as z from 'zod';");
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      if (args.path.includes('node_modules')) return undefined;
      return { contents: namespaceZod(await readFile(args.path, 'utf8')), loader: 'ts' };
    });
    b.onLoad({ filter: /@aws-lambda-powertools\/parser\/.*\.js$/ }, async (args) => ({
      contents: namespaceZod(await readFile(args.path, 'utf8')),
      loader: 'js',
    }));
  },
};

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
  const { banner, from } = infraBanner();
  const options = {
    bundle: true,
    minify: true,
    sourcemap: 'external' as const,
    sourcesContent: false,
    format: 'esm' as const,
    platform: 'node' as const,
    target: 'node24',
    mainFields: ['module', 'main'],
    banner: { js: banner },
    external: ['pg-native'],
  };
  const functions: ColdStartEntry[] = [];
  await rm(opts.outDir, { recursive: true, force: true });
  for (const [name, entry] of Object.entries(FUNCTION_ENTRIES)) {
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
    // The same bundle with the two changes suggested in bench/README.md, to size them.
    const leanFile = join(dir, 'lean.mjs');
    let whatIf: ColdStartEntry['whatIf'];
    try {
      await build({ ...options, entryPoints: [abs], outfile: leanFile, logLevel: 'silent', plugins: [leanPlugin] });
      const lean = await probeInit(leanFile, dir, runs);
      whatIf = {
        changes: LEAN_CHANGES,
        bundleBytes: (await stat(leanFile)).size,
        initMsMedian: lean.initRuns.length ? r2(median(lean.initRuns)) : undefined,
        ...(lean.error ? { error: lean.error } : {}),
      };
    } catch (err) {
      whatIf = { changes: LEAN_CHANGES, error: String(err instanceof Error ? err.message : err).split('\n')[0] };
    }
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
      whatIf,
      ...(error ? { error } : {}),
    };
    functions.push(entryResult);
    opts.progress?.(
      `  ${name}: ${entryResult.bundleBytes} B${placeholder ? ' (placeholder entry)' : ''}, init median ${entryResult.initMsMedian ?? '—'} ms${error ? `, ${error}` : ''}`,
    );
  }
  return {
    esbuild: { ...options, banner: `ESM require banner from ${from}`, entryPoints: 'FUNCTION_ENTRIES (shared/runtime/env.ts)' },
    nodeVersion: process.version,
    lambdaRuntime: 'nodejs24.x (arm64)',
    runs,
    note:
      'Bundled as the CDK NodejsFunction does (minify, ESM, platform node, target node24, the same require banner, only pg-native external: @aws-sdk/* is bundled in, not taken from the runtime). ' +
      `Init = time for \`await import(bundle)\` in a fresh ${process.version} process, median of ${runs}; Lambda runs Node 24 on arm64, so absolute times differ. ` +
      'No --enable-source-maps (CDK does not set it). Bundle size is the .mjs without its external source map.',
    functions: functions.map((f) => ({ ...f, entry: relative(ROOT, join(ROOT, f.entry)) })),
  };
}
