import * as z from 'zod';

/** Counts parses, so a test can show the settings are validated once however many layers read them. */
export const settingsParses = { count: 0 };

export const KvSettingsSchema = z
  .strictObject({
    endpoint: z.url({ message: 'must be the URL of the kv store' }),
    /** A secret reference of the store's admin token, resolved through the runtime's resolveSecret. */
    adminTokenSecret: z.string().min(1),
    tokenPrefix: z
      .string()
      .regex(/^[a-z]+-$/)
      .default('tl-'),
  })
  .transform((s) => {
    settingsParses.count++;
    return s;
  });
export type KvSettings = z.output<typeof KvSettingsSchema>;

export const KvAccessSchema = z.strictObject({ scope: z.enum(['read', 'write']) });
export type KvAccess = z.output<typeof KvAccessSchema>;
