import type { TaskLeaseConfig } from '../shared/policy/config.ts';
import type { FUNCTION_ENTRIES } from '../shared/runtime/env.ts';
import { TARGET_KINDS } from '../shared/targets/index.ts';

/*
 * How each function is bundled: esbuild options as plain data, so the construct (NodejsFunction),
 * the bundle-size test and bench/cold-start.ts build exactly the same bundle.
 */

type FunctionName = keyof typeof FUNCTION_ENTRIES;

/** ESM bundles need `require` for the CommonJS dependencies esbuild inlines (pg, Powertools). */
export const ESM_REQUIRE_BANNER =
  "import { createRequire as __taskleaseCreateRequire } from 'node:module';const require = __taskleaseCreateRequire(import.meta.url);";

/** The most a function bundle may weigh (the minified .mjs, without its source map). */
export const BUNDLE_MAX_BYTES = 1_000_000;

/** The functions that verify JWT-SVIDs (a start's, an end's) and so may load a trust bundle. */
export const SVID_VERIFIERS: readonly FunctionName[] = ['taskStarted', 'taskEnded'];

/** What a function's bundle must carry beyond the core. */
export interface BundleNeeds {
  /** @aws-sdk/client-ssm: this function verifies SVIDs and a trust domain's bundle is an SSM parameter. */
  readonly ssm: boolean;
  /** Powertools Tracer and the X-Ray SDK (TaskLeaseProps.tracing). */
  readonly xray: boolean;
  /** Target kinds the config has no target of: left out of the bundle (see kindSwitch). */
  readonly unusedKinds: readonly string[];
}

export function bundleNeeds(name: FunctionName, config: TaskLeaseConfig, xray: boolean): BundleNeeds {
  const ssmBundles = Object.values(config.trustDomains).some((td) => 'ssmParameter' in td.bundle);
  const used = new Set(Object.values(config.targets).map((t) => t.kind));
  const unusedKinds = TARGET_KINDS.filter((k) => !used.has(k.kind)).map((k) => k.kind);
  return { ssm: ssmBundles && SVID_VERIFIERS.includes(name), xray, unusedKinds };
}

/**
 * The expression a kind's registry line tests (shared/targets/index.ts) so a bundle can leave the
 * kind out: defined as "off" for kinds the config does not use, esbuild folds the test and, the
 * kind's folder being free of side effects (its package.json), drops its code and its client
 * library. A kind whose line has no such test is always bundled.
 */
export function kindSwitch(kind: string): string {
  return `process.env.TASKLEASE_KIND_${kind.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** The esbuild options of one function's bundle (the subset NodejsFunction's `bundling` expresses). */
export interface EsbuildOptions {
  minify: true;
  format: 'esm';
  platform: 'node';
  target: string;
  mainFields: string[];
  banner: string;
  external: string[];
  define: Record<string, string>;
}

export function esbuildOptions(needs: BundleNeeds): EsbuildOptions {
  return {
    minify: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    mainFields: ['module', 'main'],
    banner: ESM_REQUIRE_BANNER,
    // The AWS SDK v3 is bundled, not taken from the runtime: the deployed code runs the exact SDK
    // versions the handler tests ran against (package-lock). pg-native is pg's optional native
    // binding, never installed. @aws-sdk/client-ssm is left out where nothing can reach it: it
    // is loaded only by an `ssmParameter` trust bundle's first load (a dynamic import in
    // shared/identity/bundle-sources.ts), and a single-file bundle would otherwise always carry
    // its ~226 kB.
    external: ['pg-native', ...(needs.ssm ? [] : ['@aws-sdk/client-ssm'])],
    // functions/lib/powertools.ts tests exactly this expression; 'off' lets esbuild drop the tracer.
    // Kinds the config does not use are left out the same way (kindSwitch).
    define: {
      ...(needs.xray ? {} : { 'process.env.TASKLEASE_XRAY': '"off"' }),
      ...Object.fromEntries(needs.unusedKinds.map((k) => [kindSwitch(k), '"off"'])),
    },
  };
}
