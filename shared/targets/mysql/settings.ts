import * as z from 'zod';
import { describeIssues } from '../../events/parse.ts';
import { ConfigError } from '../../lease/errors.ts';
import { MAX_PREFIX_LENGTH } from './names.ts';
import { VpcSettingsSchema } from '../common-settings.ts';

const PRINTABLE = /^[^\p{Cc}\p{Cs}]*$/u;

/** A schema, table or role name as we accept it in config; it is still always quoted. */
export const MysqlIdentifierSchema = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(64, { error: 'must be at most 64 characters' })
  .regex(/^[A-Za-z_][A-Za-z0-9_$]*$/, { error: 'must be a MySQL identifier: a letter or underscore, then letters, digits, _ or $' });

const text = (max: number) =>
  z
    .string({ error: 'must be a string' })
    .min(1, { error: 'must not be empty' })
    .max(max, { error: `must be at most ${max} characters` })
    .regex(PRINTABLE, { error: 'must not contain control characters' });

const int = (min: number, max: number) =>
  z
    .number({ error: 'must be a number' })
    .int({ error: 'must be an integer' })
    .min(min, { error: `must be between ${min} and ${max}` })
    .max(max, { error: `must be between ${min} and ${max}` });

/**
 * Object-level privileges a task may hold. Global and administrative ones (SUPER, FILE, PROCESS,
 * CREATE USER, GRANT OPTION, …) are not grantable through tasklease: a task holding them could
 * outlive its revocation (create another account) or read other users' sessions.
 */
export const GRANTABLE_PRIVILEGES = [
  'SELECT',
  'INSERT',
  'UPDATE',
  'DELETE',
  'CREATE',
  'DROP',
  'ALTER',
  'INDEX',
  'REFERENCES',
  'CREATE TEMPORARY TABLES',
  'LOCK TABLES',
  'EXECUTE',
  'CREATE VIEW',
  'SHOW VIEW',
  'CREATE ROUTINE',
  'ALTER ROUTINE',
  'TRIGGER',
  'EVENT',
] as const;
export type GrantablePrivilege = (typeof GRANTABLE_PRIVILEGES)[number];

/** `schema.*` or `schema.table`: never `*.*` (a global grant is cached in the session past DROP USER). */
const OBJECT_PATTERN = /^([A-Za-z_][A-Za-z0-9_$]{0,63})\.(\*|[A-Za-z_][A-Za-z0-9_$]{0,63})$/;

export const MysqlGrantSchema = z.strictObject({
  privileges: z
    .array(
      z
        .string({ error: 'must be a string' })
        .transform((p) => p.trim().toUpperCase().replace(/\s+/g, ' '))
        .pipe(z.enum(GRANTABLE_PRIVILEGES, { error: `must be one of ${GRANTABLE_PRIVILEGES.join(', ')}` })),
    )
    .min(1, { error: 'must list at least one privilege' }),
  on: z
    .string({ error: 'must be a string' })
    .regex(OBJECT_PATTERN, { error: "must be 'schema.*' or 'schema.table' (no global *.* grants)" }),
});
export type MysqlGrant = z.output<typeof MysqlGrantSchema>;

/**
 * An access level: a role (granted and made the default role, so the workload needs no SET ROLE),
 * a grant list, or both. MariaDB has one default role per user, hence one role.
 */
export const MysqlAccessSchema = z
  .strictObject({
    role: MysqlIdentifierSchema.optional(),
    grants: z.array(MysqlGrantSchema).min(1, { error: 'must list at least one grant' }).max(50).optional(),
    /** Per-user connection cap (MAX_USER_CONNECTIONS). */
    maxUserConnections: int(1, 10_000).optional(),
  })
  .superRefine((a, ctx) => {
    if (a.role === undefined && a.grants === undefined) {
      ctx.addIssue({ code: 'custom', path: ['role'], message: 'an access level needs a role or grants (or both)' });
    }
  });
export type MysqlAccess = z.output<typeof MysqlAccessSchema>;

/**
 * A reference to the admin password: a Secrets Manager ARN or name (resolved by the runtime's
 * `resolveSecret`, optionally `#field` of a JSON secret), `file:/path` (the file's content, one
 * trailing newline dropped) or `env:NAME` — the last two only outside AWS.
 */
const SecretRefSchema = text(2048).refine((r) => !r.startsWith('file:') || r.length > 'file:'.length, {
  error: 'file: needs a path',
});

export const MysqlSettingsSchema = z
  .strictObject({
    host: text(255),
    port: int(1, 65_535).default(3306),
    /** The admin: CREATE USER, PROCESS, CONNECTION ADMIN (MariaDB) / CONNECTION_ADMIN (MySQL), the access levels' privileges WITH GRANT OPTION. */
    user: text(80),
    /** Inline admin password: for local development only; refused in AWS (aws.ts). */
    password: text(1024).optional(),
    passwordSecret: SecretRefSchema.refine((r) => !/^env:(?![A-Za-z_][A-Za-z0-9_]*$)/.test(r), {
      error: 'env: needs a variable name',
    }).optional(),
    /** `auto` asks the server once (VERSION()). The two differ in password hashing and default-role syntax. */
    flavor: z.enum(['auto', 'mariadb', 'mysql'], { error: "must be 'auto', 'mariadb' or 'mysql'" }).default('auto'),
    ssl: z
      .union([z.literal('require'), z.literal('verify-full'), z.literal(false)], { error: "must be 'require', 'verify-full' or false" })
      .optional(),
    sslCa: z.string().min(1).max(1_000_000).optional(),
    userPrefix: z
      .string({ error: 'must be a string' })
      .min(1, { error: 'must not be empty' })
      .max(MAX_PREFIX_LENGTH, { error: `must be at most ${MAX_PREFIX_LENGTH} characters (user names stay within 32)` })
      .regex(/^[a-z_][a-z0-9_]*$/, { error: 'must be lower-case letters, digits and _, not starting with a digit' })
      .default('tl_'),
    /** The host part of every task account ('%': any client host). */
    userHost: text(255)
      .regex(/^[A-Za-z0-9.%_:-]+$/, { error: "must be a MySQL host pattern such as '%' or '10.0.%'" })
      .default('%'),
    /** Admin connections per driver: the driver never holds more, whatever the bus sends it. */
    adminPoolMax: int(1, 100).default(4),
    connectTimeoutMs: int(100, 120_000).default(5_000),
    /** How long revoke waits for killed sessions to leave the process list before failing (retryably). */
    sessionDrainTimeoutMs: int(100, 300_000).default(10_000),
    /** Where the functions that reach this server run in AWS; read by the CDK stack, not the driver. */
    vpc: VpcSettingsSchema.optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.password === undefined) === (s.passwordSecret === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['password'], message: 'exactly one of password or passwordSecret is required' });
    }
  });
export type MysqlSettings = z.output<typeof MysqlSettingsSchema>;
export type MysqlSettingsInput = z.input<typeof MysqlSettingsSchema>;

/** Parses settings or throws a {@link ConfigError} whose message names each bad field. */
export function parseMysqlSettings(raw: unknown, what = 'mysql settings'): MysqlSettings {
  const r = MysqlSettingsSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`${what}: ${describeIssues(r.error)}`);
  return r.data;
}

export function parseMysqlAccess(raw: unknown, what = 'mysql access'): MysqlAccess {
  const r = MysqlAccessSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`${what}: ${describeIssues(r.error)}`);
  return r.data;
}

/** `schema.*` / `schema.table` split into its parts (validated by the schema). */
export function objectOf(on: string): { schema: string; table: string | undefined } {
  const m = OBJECT_PATTERN.exec(on);
  if (!m) throw new ConfigError(`not a grant object: ${on.slice(0, 140)}`);
  return { schema: m[1]!, table: m[2] === '*' ? undefined : m[2] };
}
