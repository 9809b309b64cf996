import { ConfigError } from '../lease/errors.ts';
import type { TargetDriver, TargetRegistry } from '../lease/ports.ts';
import type { DriverDeps } from '../targets/driver.ts';
import { validateTargets } from './config.ts';
import type { DriverFactories, TaskLeaseConfig } from './config.ts';

/** A TargetRegistry that also closes its drivers (pools, clients) on shutdown. */
export interface ClosableTargetRegistry extends TargetRegistry {
  names(): string[];
  close(): Promise<void>;
}

/**
 * Creates one driver per configured target through the factory of its kind. Runs the second
 * validation pass first, so a bad target fails here with a path-named ConfigError.
 */
export function buildTargetRegistry(config: TaskLeaseConfig, factories: DriverFactories, deps: DriverDeps = {}): ClosableTargetRegistry {
  const drivers = new Map<string, TargetDriver>();
  for (const target of validateTargets(config, factories)) {
    const driver = target.factory.create({ name: target.name, settings: target.settings, access: target.access }, deps);
    if (driver.kind !== target.kind) {
      throw new ConfigError(`targets.${target.name}.kind: factory for '${target.kind}' built a '${driver.kind}' driver`);
    }
    drivers.set(target.name, driver);
  }
  return {
    get: (name) => drivers.get(name),
    all: () => [...drivers.values()],
    names: () => [...drivers.keys()],
    async close() {
      // Close every driver even if one fails; report the first failure.
      const results = await Promise.allSettled([...drivers.values()].map((d) => d.close?.()));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    },
  };
}
