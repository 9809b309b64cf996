import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { isNode, LineCounter, parseDocument } from 'yaml';
import type { Document, YAMLError } from 'yaml';
import * as z from 'zod';
import { AccessNameSchema, TargetNameSchema } from '../events/schemas.ts';
import { LIMITS, PRINTABLE_PATTERN } from '../events/limits.ts';
import { ConfigError } from '../lease/errors.ts';
import { configError, flattenIssues, locators, parseErrors } from './config-errors.ts';
import type { Locator } from './config-errors.ts';
import { checkSpiffePattern, checkTrustDomain } from './pattern.ts';
import { validateTargets } from './targets.ts';
import type { DriverFactories } from './targets.ts';

// Pass 2 and the error format live beside this file; their names stay importable from here.
export { formatPath } from './config-errors.ts';
export { validateTargets, markTargetsValidated } from './targets.ts';
export type { AnyDriverFactory, DriverFactories, ResolvedTarget } from './targets.ts';

/*
 * The `tasklease.config` file: trust domains, targets and the rules that map SPIFFE ID
 * patterns to grants. One file drives the local runtime and the CDK stack.
 *
 * Validation happens in two passes so the base schema needs no knowledge of target kinds:
 *   1. `parseConfig` / `loadConfig`: syntax and the base schema, including cross-references
 *      (a rule's grants must name a configured target and access level).
 *   2. `validateTargets` (targets.ts): each target's `settings` and `access` against its kind's
 *      DriverFactory, once per config: the drivers get its output.
 * Every error names the path of the bad field, e.g. `rules[2].spiffeId: …` or
 * `targets.orders-db.settings.port: …`, plus the line in the file when it is known.
 */

const printable = (max: number) => z.string().min(1).max(max).regex(PRINTABLE_PATTERN, { message: 'must not contain control characters' });

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Where a trust domain's JWKS bundle comes from: exactly one of the four sources. */
export type BundleSource = { file: string } | { url: string } | { ssmParameter: string } | { local: true };

const BundleSourceSchema = z
  .strictObject({
    file: printable(4096).optional(),
    url: z.url({ message: 'must be an https:// URL of a SPIFFE bundle endpoint' }).optional(),
    ssmParameter: z
      .string()
      .regex(/^\/?[A-Za-z0-9_.\-/]{1,2048}$/, { message: 'must be an SSM parameter name such as /tasklease/bundle' })
      .optional(),
    local: z.literal(true, { message: 'must be true (the local runtime serves this bundle itself)' }).optional(),
  })
  .superRefine((b, ctx) => {
    const given = (['file', 'url', 'ssmParameter', 'local'] as const).filter((k) => b[k] !== undefined);
    if (given.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message:
          given.length === 0
            ? 'must set exactly one of file, url, ssmParameter or local'
            : `must set exactly one of file, url, ssmParameter or local (found ${given.join(' and ')})`,
      });
    }
    if (b.url !== undefined) {
      const u = new URL(b.url);
      // Plain http only on loopback, for local bundle endpoints in tests and development.
      if (u.protocol !== 'https:' && !(u.protocol === 'http:' && LOOPBACK_HOSTS.has(u.hostname))) {
        ctx.addIssue({ code: 'custom', path: ['url'], message: 'must use https:// (http:// is accepted only for localhost)' });
      }
    }
  })
  .transform((b): BundleSource => {
    if (b.file !== undefined) return { file: b.file };
    if (b.url !== undefined) return { url: b.url };
    if (b.ssmParameter !== undefined) return { ssmParameter: b.ssmParameter };
    return { local: true };
  });

const TrustDomainSchema = z.strictObject({
  bundle: BundleSourceSchema,
  /** Overrides the bundle's own `spiffe_refresh_hint`. */
  refreshHintSeconds: z.number().int().min(1).max(86_400).optional(),
  /**
   * Refuse JWT-SVIDs without a `jti`, so each SVID has a replay key of its own. On unless the
   * config turns it off (SPIRE mints JWT-SVIDs without `jti` by default: set false there).
   */
  requireJti: z.boolean().default(true),
});

const TargetSchema = z.strictObject({
  kind: z
    .string()
    .min(1)
    .max(32)
    .regex(/^[a-z][a-z0-9-]*$/, { message: 'must be a target kind such as postgres or aws-role' }),
  /** Driver specific; validated by `validateTargets` against the kind's factory. */
  settings: z.unknown(),
  /** Named access levels; each value is driver specific. */
  access: z.record(z.string(), z.unknown()),
  /** Upper bound of concurrent leases on this target; protects the target (used by the CDK stack). */
  maxConcurrency: z.number().int().min(1).max(10_000).optional(),
});

const GRANT_STRING = /^([a-z][a-z0-9-]*)\.([a-z][a-z0-9-]*)$/;

const RuleSchema = z.strictObject({
  id: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { message: 'must start with a letter or digit and use only A-Z a-z 0-9 . _ -' }),
  spiffeId: z.string().superRefine((pattern, ctx) => {
    const problem = checkSpiffePattern(pattern);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }),
  grants: z
    .array(z.string().regex(GRANT_STRING, { message: 'must be "<target>.<access>", for example orders-db.read' }))
    .min(1, { message: 'must list at least one grant ("<target>.<access>"); a workload with no rule is denied anyway' })
    .max(LIMITS.grantsMax * 4),
  maxLeaseSeconds: z
    .number()
    .int({ message: 'must be a whole number of seconds' })
    .min(LIMITS.minDurationSeconds, {
      message: `must be at least ${LIMITS.minDurationSeconds} seconds (the shortest lease a task may request)`,
    })
    .max(LIMITS.maxDurationSeconds, {
      message: `must be at most ${LIMITS.maxDurationSeconds} seconds (the longest lease a task may request)`,
    }),
  initiators: z
    .array(printable(LIMITS.initiatorMaxLength))
    .min(1, { message: 'must not be empty: remove the field to allow any initiator' })
    .optional(),
  /**
   * SPIFFE ID patterns of engines whose own identity may send `Task Ended` for this rule's
   * workloads (the workload itself always may). Same pattern syntax as spiffeId.
   */
  endedBy: z
    .array(
      z.string().superRefine((pattern, ctx) => {
        const problem = checkSpiffePattern(pattern);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
    )
    .min(1, { message: 'must not be empty: remove the field if only the workload itself ends its tasks' })
    .max(100)
    .optional(),
  awsPrincipal: z
    .string()
    .regex(/^arn:aws[a-z-]*:(iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/:-]+$/, {
      message: 'must be an IAM principal ARN such as arn:aws:iam::123456789012:role/etl',
    })
    .optional(),
});

const RuntimeSettingsSchema = z.strictObject({
  /** How long revocation keeps trying to prove a credential is rejected before alarming. */
  verifyDeadlineSeconds: z.number().int().min(1).max(3600).default(30),
  reaperIntervalSeconds: z.number().int().min(5).max(3600).default(60),
  /** Open trust debt older than this breaches the objective (alarm). */
  openDebtObjectiveSeconds: z.number().int().min(1).max(86_400).default(300),
});

// The fields the cross-reference check reads. When they have the right shape the check runs even
// if other fields failed, so one run reports every problem (zod would skip it otherwise).
const CrossCheckShape = z.looseObject({
  trustDomains: z.record(z.string(), z.unknown()),
  targets: z.record(z.string(), z.looseObject({ access: z.record(z.string(), z.unknown()) })),
  rules: z.array(z.looseObject({ id: z.string(), spiffeId: z.string(), grants: z.array(z.string()) })),
});

export const TaskLeaseConfigSchema = z
  .strictObject({
    /** JWT-SVID audience the broker accepts. */
    audience: printable(256),
    clockSkewSeconds: z.number().int().min(0).max(300).default(30),
    trustDomains: z.record(z.string(), TrustDomainSchema),
    targets: z.record(z.string(), TargetSchema),
    rules: z.array(RuleSchema).max(10_000),
    settings: RuntimeSettingsSchema.prefault({}),
  })
  .superRefine(
    (cfg, ctx) => {
      const trustDomains = Object.keys(cfg.trustDomains);
      if (trustDomains.length === 0) {
        ctx.addIssue({ code: 'custom', path: ['trustDomains'], message: 'must name at least one trust domain' });
      }
      for (const td of trustDomains) {
        const problem = checkTrustDomain(td);
        if (problem) ctx.addIssue({ code: 'custom', path: ['trustDomains', td], message: `key must be a trust domain name: ${problem}` });
      }
      for (const [name, target] of Object.entries(cfg.targets)) {
        const bad = TargetNameSchema.safeParse(name);
        if (!bad.success) {
          ctx.addIssue({
            code: 'custom',
            path: ['targets', name],
            message: `key is not a valid target name: ${bad.error.issues[0]?.message}`,
          });
        }
        if (Object.keys(target.access).length === 0) {
          ctx.addIssue({
            code: 'custom',
            path: ['targets', name, 'access'],
            message: 'must define at least one access level (for example read)',
          });
        }
        for (const access of Object.keys(target.access)) {
          const badAccess = AccessNameSchema.safeParse(access);
          if (!badAccess.success) {
            ctx.addIssue({
              code: 'custom',
              path: ['targets', name, 'access', access],
              message: `key is not a valid access name: ${badAccess.error.issues[0]?.message}`,
            });
          }
        }
      }

      const ids = new Map<string, number>();
      const patterns = new Map<string, number>();
      cfg.rules.forEach((rule, i) => {
        const firstId = ids.get(rule.id);
        if (firstId !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['rules', i, 'id'],
            message: `duplicate rule id '${rule.id}' (also rules[${firstId}]); rule ids must be unique`,
          });
        } else ids.set(rule.id, i);

        // Two rules with one pattern would make "most specific wins" ambiguous.
        const firstPattern = patterns.get(rule.spiffeId);
        if (firstPattern !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['rules', i, 'spiffeId'],
            message: `same pattern as rule '${cfg.rules[firstPattern]?.id}' (rules[${firstPattern}]); merge the two rules`,
          });
        } else patterns.set(rule.spiffeId, i);

        const td = trustDomainOfPattern(rule.spiffeId);
        if (td !== undefined && trustDomains.length > 0 && !(td in cfg.trustDomains)) {
          ctx.addIssue({
            code: 'custom',
            path: ['rules', i, 'spiffeId'],
            message: `trust domain '${td}' is not configured in trustDomains (configured: ${trustDomains.join(', ')}); add it there or fix the pattern`,
          });
        }

        const seen = new Set<string>();
        rule.grants.forEach((grant, j) => {
          if (seen.has(grant)) {
            ctx.addIssue({ code: 'custom', path: ['rules', i, 'grants', j], message: `grant '${grant}' is listed twice` });
          }
          seen.add(grant);
          const m = GRANT_STRING.exec(grant);
          if (!m) return;
          const [, targetName = '', access = ''] = m;
          const target = Object.hasOwn(cfg.targets, targetName) ? cfg.targets[targetName] : undefined;
          if (!target) {
            const known = Object.keys(cfg.targets);
            ctx.addIssue({
              code: 'custom',
              path: ['rules', i, 'grants', j],
              message: `target '${targetName}' is not defined in targets (defined: ${known.length ? known.join(', ') : 'none'})`,
            });
          } else if (!Object.hasOwn(target.access, access)) {
            ctx.addIssue({
              code: 'custom',
              path: ['rules', i, 'grants', j],
              message: `target '${targetName}' has no access level '${access}' (defined: ${Object.keys(target.access).join(', ') || 'none'})`,
            });
          }
        });
      });
    },
    { when: (payload) => CrossCheckShape.safeParse(payload.value).success },
  );

export type TaskLeaseConfig = z.output<typeof TaskLeaseConfigSchema>;
export type TaskLeaseConfigInput = z.input<typeof TaskLeaseConfigSchema>;
export type RuleConfig = TaskLeaseConfig['rules'][number];
export type TargetConfig = TaskLeaseConfig['targets'][string];
export type TrustDomainConfig = TaskLeaseConfig['trustDomains'][string];
export type RuntimeSettings = TaskLeaseConfig['settings'];

function trustDomainOfPattern(pattern: string): string | undefined {
  if (!pattern.startsWith('spiffe://')) return undefined;
  const rest = pattern.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  return slash === -1 ? rest : rest.slice(0, slash);
}

// ---------------------------------------------------------------------------------------------
// Pass 1: text → base config

export interface ParseOptions {
  /** Directory that relative `bundle.file` paths are resolved against (loadConfig: the file's own). */
  baseDir?: string;
}

/** Parses YAML or JSON text (JSON is YAML) and validates it against the base schema. */
export function parseConfig(text: string, sourceName: string, options: ParseOptions = {}): TaskLeaseConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const messages = doc.errors.map((e: YAMLError) => {
      const pos = e.linePos?.[0];
      // First line only: yaml's pretty message continues with an excerpt of the file,
      // which could carry a value we must not repeat in a log.
      const what = (e.message.split('\n')[0] ?? e.code).replace(/ at line \d+, column \d+:?$/, '');
      return `  ${pos ? `line ${pos.line}, column ${pos.col}` : 'unknown position'}: YAML syntax error: ${what}`;
    });
    throw new ConfigError(`invalid tasklease config ${sourceName}:\n${messages.join('\n')}`);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(`invalid tasklease config ${sourceName}: ${err instanceof Error ? err.message.split('\n')[0] : 'unreadable'}`);
  }
  const locate = makeLocator(doc, lineCounter);
  const parsed = TaskLeaseConfigSchema.safeParse(data ?? {}, { error: parseErrors });
  if (!parsed.success) throw configError(sourceName, flattenIssues(parsed.error.issues), locate);

  const config = parsed.data;
  if (options.baseDir !== undefined) {
    for (const td of Object.values(config.trustDomains)) {
      if ('file' in td.bundle && !isAbsolute(td.bundle.file)) td.bundle = { file: resolve(options.baseDir, td.bundle.file) };
    }
  }
  locators.set(config, { source: sourceName, locate });
  return config;
}

export interface LoadOptions {
  /** When given, also runs the second pass (`validateTargets`) against these factories. */
  factories?: DriverFactories;
}

/** Reads and validates a `tasklease.config` file; relative bundle paths resolve against its directory. */
export async function loadConfig(path: string, options: LoadOptions = {}): Promise<TaskLeaseConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new ConfigError(`cannot read tasklease config ${path}: ${typeof code === 'string' ? code : 'read failed'}`);
  }
  const config = parseConfig(text, path, { baseDir: dirname(resolve(path)) });
  if (options.factories) validateTargets(config, options.factories);
  return config;
}

// Here, not in config-errors.ts: that file is in the Lambda bundles, and this needs the YAML parser's value import.
function makeLocator(doc: Document, lines: LineCounter): Locator {
  return (path) => {
    // The deepest node that exists: for a missing field, that is the object that lacks it.
    for (let n = path.length; n > 0; n--) {
      const node = doc.getIn(path.slice(0, n) as unknown[], true);
      if (isNode(node) && node.range) return lines.linePos(node.range[0]).line;
    }
    return undefined;
  };
}
