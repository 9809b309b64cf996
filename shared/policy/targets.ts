import type { DriverFactory } from '../targets/driver.ts';
import { configError, flattenIssues, locators, parseErrors } from './config-errors.ts';
import type { Issue } from './config-errors.ts';
import type { TaskLeaseConfig } from './config.ts';

/*
 * Pass 2 of config validation: each target's `settings` and `access` against the schemas of its
 * kind. It runs once per config object and set of factories (later calls get the same result),
 * so the registry, the local runtime and `loadConfig` share one parse; a config is not changed
 * after it was parsed.
 */

// The factories' own type parameters vary by kind; the config layer only moves values through.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyDriverFactory = DriverFactory<any, any, any>;
export type DriverFactories<F extends AnyDriverFactory = AnyDriverFactory> =
  readonly F[] | ReadonlyMap<string, F> | Readonly<Record<string, F>>;

/** A target whose settings and access levels passed its driver's schemas (values as the schemas output them). */
export interface ResolvedTarget<F extends AnyDriverFactory = AnyDriverFactory> {
  name: string;
  kind: string;
  factory: F;
  settings: unknown;
  access: Record<string, unknown>;
  maxConcurrency?: number;
}

function factoryMap<F extends AnyDriverFactory>(factories: DriverFactories<F>): Map<string, F> {
  if (factories instanceof Map) return new Map(factories);
  const list: F[] = Array.isArray(factories) ? [...(factories as readonly F[])] : Object.values(factories as Readonly<Record<string, F>>);
  return new Map(list.map((f) => [f.kind, f]));
}

// config → factories (by identity) → the targets validated against them.
const validated = new WeakMap<TaskLeaseConfig, WeakMap<object, readonly ResolvedTarget[]>>();

/**
 * Records `targets` as the validated targets of `config` against `factories`, for a config that
 * was derived from a validated one (the local runtime's, with settings pointing at what it started):
 * `validateTargets(config, factories)` then returns them without parsing again.
 */
export function markTargetsValidated<F extends AnyDriverFactory>(
  config: TaskLeaseConfig,
  factories: DriverFactories<F>,
  targets: readonly ResolvedTarget<F>[],
): void {
  let byFactories = validated.get(config);
  if (!byFactories) validated.set(config, (byFactories = new WeakMap()));
  byFactories.set(factories, [...targets]);
}

/**
 * Validates every target's `settings` and `access` against the factory of its `kind`.
 * Throws one ConfigError listing every problem, each with its path.
 */
export function validateTargets<F extends AnyDriverFactory>(config: TaskLeaseConfig, factories: DriverFactories<F>): ResolvedTarget<F>[] {
  const known = validated.get(config)?.get(factories);
  if (known) return [...(known as readonly ResolvedTarget<F>[])];

  const byKind = factoryMap(factories);
  const issues: Issue[] = [];
  const resolved: ResolvedTarget<F>[] = [];

  for (const [name, target] of Object.entries(config.targets)) {
    const factory = byKind.get(target.kind);
    if (!factory) {
      const kinds = [...byKind.keys()];
      issues.push({
        path: ['targets', name, 'kind'],
        message: `unknown target kind '${target.kind}' (known: ${kinds.length ? kinds.join(', ') : 'none registered'})`,
      });
      continue;
    }
    let ok = true;
    const settings = factory.settingsSchema.safeParse(target.settings, { error: parseErrors });
    if (!settings.success) {
      ok = false;
      issues.push(...flattenIssues(settings.error.issues, ['targets', name, 'settings']));
    }
    const access: Record<string, unknown> = {};
    for (const [level, value] of Object.entries(target.access)) {
      const parsed = factory.accessSchema.safeParse(value, { error: parseErrors });
      if (!parsed.success) {
        ok = false;
        issues.push(...flattenIssues(parsed.error.issues, ['targets', name, 'access', level]));
      } else access[level] = parsed.data;
    }
    if (ok) {
      resolved.push({
        name,
        kind: target.kind,
        factory,
        settings: settings.data,
        access,
        ...(target.maxConcurrency !== undefined ? { maxConcurrency: target.maxConcurrency } : {}),
      });
    }
  }

  if (issues.length > 0) {
    const origin = locators.get(config);
    throw configError(origin?.source ?? '(in memory)', issues, origin?.locate);
  }
  markTargetsValidated(config, factories, resolved);
  return resolved;
}
