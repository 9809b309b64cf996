import type { z } from 'zod';
import type { TargetDriver } from '../lease/ports.ts';

/**
 * The services a runtime offers driver factories; each runtime fills what it has. A factory
 * declares the ones it reads (`DriverFactory.services`) and the registry hands it only those.
 */
export interface DriverServices {
  /** Resolves a secret reference (for example an admin password's Secrets Manager ARN). */
  resolveSecret?: (ref: string) => Promise<string>;
  /**
   * Builds an AWS SDK client the runtime's way (credentials, tracing in Lambda); a driver passes
   * its own region. Absent: drivers construct plain clients.
   */
  awsClient?: <C>(Client: new (config: { region?: string }) => C, region?: string) => C;
  /**
   * A mutex shared by every broker process, for targets whose shared state has no conditional
   * write (an IAM inline policy). Without it a driver can only serialise within its process.
   */
  lock?: <T>(name: string, ttlMs: number, fn: () => Promise<T>) => Promise<T>;
}

export type DriverServiceName = keyof DriverServices;

/** @deprecated The old name of {@link DriverServices} (its untyped `aws` bag is gone: runtimes pass `awsClient`). */
export type DriverDeps = DriverServices;

/** One configured target as its factory receives it: settings and access already validated by its schemas. */
export interface DriverTarget<Settings = unknown, Access = unknown> {
  name: string;
  settings: Settings;
  access: Record<string, Access>;
  /** The target's `maxConcurrency`: a driver caps its own admin work at it (in every runtime). */
  maxConcurrency?: number;
}

/** A driver's own admin concurrency, never above the target's `maxConcurrency`. */
export function cappedConcurrency(own: number, target: Pick<DriverTarget, 'maxConcurrency'>): number {
  return Math.max(1, Math.min(own, target.maxConcurrency ?? own));
}

/**
 * How to validate a kind's config and build its driver. `create` gets the output of the kind's
 * schemas (validated once, by `validateTargets`) and only the services the factory declares.
 */
export interface DriverFactory<Settings = unknown, Access = unknown, Uses extends DriverServiceName = DriverServiceName> {
  readonly kind: string;
  readonly settingsSchema: z.ZodType<Settings>;
  readonly accessSchema: z.ZodType<Access>;
  /** The runtime services `create` reads. */
  readonly services: readonly Uses[];
  create(target: DriverTarget<Settings, Access>, services: Pick<DriverServices, Uses>): TargetDriver;
}

/** The declared services out of everything a runtime offers. */
export function servicesFor<U extends DriverServiceName>(offered: DriverServices, uses: readonly U[]): Pick<DriverServices, U> {
  const picked: Partial<DriverServices> = {};
  for (const name of uses) if (offered[name] !== undefined) Object.assign(picked, { [name]: offered[name] });
  return picked as Pick<DriverServices, U>;
}
