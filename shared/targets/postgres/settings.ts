import * as z from 'zod';
import { describeIssues } from '../../events/parse.ts';
import { ConfigError } from '../../lease/errors.ts';
import { MAX_IDENTIFIER_LENGTH, MAX_PREFIX_LENGTH } from './names.ts';
import { VpcSettingsSchema } from '../common-settings.ts';

const PRINTABLE = /^[^\p{Cc}\p{Cs}]*$/u;

/** An unquoted-style identifier: what we accept for group roles. We still always quote it. */
export const PgIdentifierSchema = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(MAX_IDENTIFIER_LENGTH, { error: `must be at most ${MAX_IDENTIFIER_LENGTH} characters` })
  .regex(/^[A-Za-z_][A-Za-z0-9_$]*$/, {
    error: 'must be a PostgreSQL identifier: a letter or underscore, then letters, digits, _ or $',
  });

const connectionText = (max: number) =>
  z
    .string({ error: 'must be a string' })
    .min(1, { error: 'must not be empty' })
    .max(max, { error: `must be at most ${max} characters` })
    .regex(PRINTABLE, { error: 'must not contain control characters' });

export const PostgresSettingsSchema = z
  .strictObject({
    host: connectionText(255),
    port: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be an integer' })
      .min(1, { error: 'must be between 1 and 65535' })
      .max(65_535, { error: 'must be between 1 and 65535' })
      .default(5432),
    database: connectionText(MAX_IDENTIFIER_LENGTH),
    /** The admin user: needs CREATEROLE, ADMIN OPTION on the group roles, pg_signal_backend. */
    user: connectionText(MAX_IDENTIFIER_LENGTH),
    password: connectionText(1024).optional(),
    /** A reference (ARN, name) resolved through the runtime's `resolveSecret`. */
    passwordSecret: connectionText(2048).optional(),
    ssl: z
      .union([z.literal('require'), z.literal('verify-full'), z.literal(false)], {
        error: "must be 'require', 'verify-full' or false",
      })
      .optional(),
    /** PEM CA bundle for `ssl: 'verify-full'` when the server's CA is not in Node's store (RDS). */
    sslCa: z.string().min(1).max(1_000_000).optional(),
    rolePrefix: z
      .string({ error: 'must be a string' })
      .min(1, { error: 'must not be empty' })
      .max(MAX_PREFIX_LENGTH, { error: `must be at most ${MAX_PREFIX_LENGTH} characters` })
      .regex(/^[a-z_][a-z0-9_]*$/, { error: 'must be lower-case letters, digits and _, not starting with a digit' })
      .refine((p) => !p.startsWith('pg_'), { error: "must not start with 'pg_' (reserved by PostgreSQL)" })
      .default('tl_'),
    adminPoolMax: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be an integer' })
      .min(1, { error: 'must be between 1 and 100' })
      .max(100, { error: 'must be between 1 and 100' })
      .default(4),
    connectTimeoutMs: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be an integer' })
      .min(100, { error: 'must be between 100 and 120000' })
      .max(120_000, { error: 'must be between 100 and 120000' })
      .default(5_000),
    /**
     * Who receives objects a task role created (REASSIGN OWNED). Default: the grant's group role,
     * which already had every privilege the task had. Never the admin by default: a task could
     * otherwise leave a SECURITY DEFINER function behind that then runs with the admin's rights.
     */
    reassignOwnedTo: PgIdentifierSchema.optional(),
    /** How long revoke waits for a role's sessions to end before failing (retryably). */
    sessionDrainTimeoutMs: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be an integer' })
      .min(100, { error: 'must be between 100 and 300000' })
      .max(300_000, { error: 'must be between 100 and 300000' })
      .default(10_000),
    /** Where the functions that reach this database run in AWS; read by the CDK stack, not by the driver. */
    vpc: VpcSettingsSchema.optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.password === undefined) === (s.passwordSecret === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['password'],
        message: 'exactly one of password or passwordSecret is required',
      });
    }
  });
export type PostgresSettings = z.output<typeof PostgresSettingsSchema>;
export type PostgresSettingsInput = z.input<typeof PostgresSettingsSchema>;

export const PostgresAccessSchema = z.strictObject({ groupRole: PgIdentifierSchema });
export type PostgresAccess = z.output<typeof PostgresAccessSchema>;

/** Parses settings or throws a {@link ConfigError} whose message names each bad field. */
export function parsePostgresSettings(raw: unknown, what = 'postgres settings'): PostgresSettings {
  const r = PostgresSettingsSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`${what}: ${describeIssues(r.error)}`);
  return r.data;
}
