import { ConfigError } from '../lease/errors.ts';
import type { TargetDriver, TargetRegistry } from '../lease/ports.ts';
import { servicesFor } from '../targets/driver.ts';
import type { DriverServices } from '../targets/driver.ts';
import type { TaskLeaseConfig } from './config.ts';
import { validateTargets } from './targets.ts';
import type { DriverFactories } from './targets.ts';

/** One configured target and its driver. */
export interface TargetEntry {
  /** The target's name in the config (what grants name). */
  readonly name: string;
  readonly kind: string;
  readonly driver: TargetDriver;
  /** The config's bound on concurrent leases on this target, when it sets one. */
  readonly maxConcurrency?: number;
}

/** A TargetRegistry that can list its targets and closes its drivers (pools, clients) on shutdown. */
export interface ClosableTargetRegistry extends TargetRegistry {
  names(): string[];
  /** Every target with its name, kind and driver, in config order. */
  entries(): TargetEntry[];
  close(): Promise<void>;
}

/**
 * Creates one driver per configured target through the factory of its kind, with the settings
 * `validateTargets` output (parsed once: a config already validated against these factories is
 * not parsed again) and only the services the factory declares. A bad target fails here with a
 * path-named ConfigError, before any driver exists.
 */
export function buildTargetRegistry(
  config: TaskLeaseConfig,
  factories: DriverFactories,
  services: DriverServices = {},
): ClosableTargetRegistry {
  const entries = new Map<string, TargetEntry>();
  for (const target of validateTargets(config, factories)) {
    const { factory } = target;
    const driver = factory.create(
      {
        name: target.name,
        settings: target.settings,
        access: target.access,
        ...(target.maxConcurrency !== undefined ? { maxConcurrency: target.maxConcurrency } : {}),
      },
      servicesFor(services, factory.services),
    );
    if (driver.kind !== target.kind) {
      throw new ConfigError(`targets.${target.name}.kind: factory for '${target.kind}' built a '${driver.kind}' driver`);
    }
    entries.set(target.name, {
      name: target.name,
      kind: target.kind,
      driver,
      ...(target.maxConcurrency !== undefined ? { maxConcurrency: target.maxConcurrency } : {}),
    });
  }
  return {
    get: (name) => entries.get(name)?.driver,
    all: () => [...entries.values()].map((e) => e.driver),
    names: () => [...entries.keys()],
    entries: () => [...entries.values()],
    async close() {
      // Close every driver even if one fails; report the first failure.
      const results = await Promise.allSettled([...entries.values()].map((e) => e.driver.close?.()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}
