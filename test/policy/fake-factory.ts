import { z } from 'zod';
import type { TargetDriver } from '../../shared/lease/ports.ts';
import type { DriverFactory, DriverServices } from '../../shared/targets/driver.ts';

/** A stand-in target kind with its own schemas: these tests exercise the config layer, not a driver. */
export const FakeSettingsSchema = z.strictObject({
  endpoint: z.string().min(1),
  port: z.number().int().min(1).max(65_535).default(7000),
});
export const FakeAccessSchema = z.strictObject({ level: z.enum(['ro', 'rw']) });

export type FakeSettings = z.output<typeof FakeSettingsSchema>;
export type FakeAccess = z.output<typeof FakeAccessSchema>;

export interface FakeDriver extends TargetDriver {
  readonly created: { name: string; settings: FakeSettings; access: Record<string, FakeAccess> };
  /** The services the registry handed create(): only the declared ones. */
  readonly deps: DriverServices;
  closed: boolean;
}

export function fakeFactory(kind = 'fake'): DriverFactory<FakeSettings, FakeAccess, 'resolveSecret'> & { built: FakeDriver[] } {
  const built: FakeDriver[] = [];
  return {
    kind,
    settingsSchema: FakeSettingsSchema,
    accessSchema: FakeAccessSchema,
    services: ['resolveSecret'],
    built,
    create(target, deps) {
      const driver: FakeDriver = {
        kind,
        created: target,
        deps,
        closed: false,
        externalId: (taskId, grant) => `${taskId}-${grant.access}`,
        issue: async () => ({ secret: {}, naturalExpiry: 0 }),
        revoke: async () => {},
        verify: async () => 'rejected',
        async close() {
          this.closed = true;
        },
      };
      built.push(driver);
      return driver;
    },
  };
}
