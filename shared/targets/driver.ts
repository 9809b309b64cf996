import type { z } from 'zod';
import type { TargetDriver } from '../lease/ports.ts';

/** Everything a driver factory may need from its runtime; each runtime fills what it has. */
export interface DriverDeps {
  /** Resolves a secret reference (for example an admin password's Secrets Manager ARN). */
  resolveSecret?: (ref: string) => Promise<string>;
  /** SDK clients, keyed by name, for AWS-backed drivers. Deprecated: use `awsClient`. */
  aws?: Record<string, unknown>;
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

/**
 * A target kind: how to validate its config and build its driver. Adding a kind is one file
 * exporting one of these, plus its registration in `targets/index.ts`.
 */
export interface DriverFactory<Settings = unknown, Access = unknown> {
  readonly kind: string;
  readonly settingsSchema: z.ZodType<Settings>;
  readonly accessSchema: z.ZodType<Access>;
  create(target: { name: string; settings: Settings; access: Record<string, Access> }, deps: DriverDeps): TargetDriver;
}
