import * as z from 'zod';
import { describeIssues } from '../../events/parse.ts';
import { ConfigError } from '../../lease/errors.ts';
import { MAX_PREFIX_LENGTH } from './names.ts';
import { VpcSettingsSchema } from '../common-settings.ts';

const PRINTABLE = /^[^\p{Cc}\p{Cs}]*$/u;

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

/*
 * An access level is a list of ACL rules, each validated against its own grammar, so a level can
 * never smuggle in a rule of another sort: `nopass`, `>password`, `allkeys`, `on`, `reset`, a
 * selector `(...)` or a second user all fail every grammar here. A glob is visible ASCII without
 * quotes or spaces (the aclfile is one line of space-separated rules per user).
 */
const GLOB = String.raw`[!#-&(-~]+`;

/** `~pattern` (read and write), `%R~pattern` (read), `%W~pattern` (write), `%RW~pattern`. */
export const KeyPatternSchema = z
  .string({ error: 'must be a string' })
  .max(256, { error: 'must be at most 256 characters' })
  .regex(new RegExp(`^(?:~|%(?:R|W|RW)~)${GLOB}$`), {
    error: 'must be a key pattern: ~glob, %R~glob, %W~glob or %RW~glob (visible ASCII, no spaces or quotes)',
  });

/** `&pattern`: Pub/Sub channels the user may publish and subscribe to. */
export const ChannelPatternSchema = z
  .string({ error: 'must be a string' })
  .max(256, { error: 'must be at most 256 characters' })
  .regex(new RegExp(`^&${GLOB}$`), { error: 'must be a channel pattern: &glob (visible ASCII, no spaces or quotes)' });

/** The command categories of Redis 7 (`ACL CAT`). */
export const COMMAND_CATEGORIES = [
  'keyspace',
  'read',
  'write',
  'set',
  'sortedset',
  'list',
  'hash',
  'string',
  'bitmap',
  'hyperloglog',
  'geo',
  'stream',
  'pubsub',
  'admin',
  'fast',
  'slow',
  'blocking',
  'dangerous',
  'connection',
  'transaction',
  'scripting',
] as const;

/** Categories a level may not add: with them a task could make another user or read other clients, and outlive its revocation. */
const UNGRANTABLE_CATEGORIES = new Set(['all', 'admin', 'dangerous']);
/** Commands a level may not add by name, for the same reason (the closing rules would remove most of them anyway). */
const UNGRANTABLE_COMMANDS = new Set([
  'acl',
  'config',
  'client',
  'module',
  'debug',
  'monitor',
  'shutdown',
  'replicaof',
  'slaveof',
  'failover',
  'sync',
  'psync',
]);

/**
 * Rules every level ends with, whatever it granted before: `@slow` or `@write` alone would
 * otherwise include ACL SETUSER, CONFIG SET, CLIENT KILL, FLUSHALL or KEYS.
 */
export const CLOSING_RULES = ['-@admin', '-@dangerous'] as const;

/** `+@category` / `-@category`, or `+command` / `-command` / `+command|subcommand`. */
export const CommandRuleSchema = z
  .string({ error: 'must be a string' })
  .max(128, { error: 'must be at most 128 characters' })
  .regex(/^[+-](?:@[a-z]+|[a-z][a-z0-9_.-]*(?:\|[a-z][a-z0-9_.-]*)?)$/, {
    error: "must be a command rule: +@category, -@category, +command, -command or +command|subcommand (e.g. '+@read', '-@dangerous')",
  })
  .superRefine((rule, ctx) => {
    const grant = rule.startsWith('+');
    const name = rule.slice(1);
    if (name.startsWith('@')) {
      const cat = name.slice(1);
      if (grant && UNGRANTABLE_CATEGORIES.has(cat)) {
        ctx.addIssue({
          code: 'custom',
          message: `'${rule}' is not grantable: a task user with it could create another user or kill other clients and outlive its revocation`,
        });
      } else if (cat !== 'all' && !(COMMAND_CATEGORIES as readonly string[]).includes(cat)) {
        ctx.addIssue({ code: 'custom', message: `unknown category @${cat} (known: ${COMMAND_CATEGORIES.join(', ')})` });
      }
    } else if (grant && UNGRANTABLE_COMMANDS.has(name.split('|')[0]!)) {
      ctx.addIssue({ code: 'custom', message: `'${rule}' is not grantable: it administers the server (users, config, clients)` });
    }
  });

export const RedisAccessSchema = z.strictObject({
  /** Key patterns the user may touch. Keys have no owner in Redis: these patterns are the whole of the access. */
  keys: z.array(KeyPatternSchema).min(1, { error: 'must list at least one key pattern' }).max(100),
  /** Pub/Sub channel patterns; none by default (`resetchannels`). */
  channels: z.array(ChannelPatternSchema).max(100).default([]),
  /** Command rules in order, e.g. ['+@read', '+@write', '-@scripting']; the level is then closed with -@admin -@dangerous. */
  commands: z.array(CommandRuleSchema).min(1, { error: 'must list at least one command rule' }).max(100),
});
export type RedisAccess = z.output<typeof RedisAccessSchema>;
export type RedisAccessInput = z.input<typeof RedisAccessSchema>;

/**
 * A reference to the admin password: a Secrets Manager ARN or name (resolved by the runtime's
 * `resolveSecret`), `file:/path` (the file's content, one trailing newline dropped) or `env:NAME`
 * — the last two only outside AWS.
 */
const SecretRefSchema = text(2048)
  .refine((r) => !r.startsWith('file:') || r.length > 'file:'.length, { error: 'file: needs a path' })
  .refine((r) => !/^env:(?![A-Za-z_][A-Za-z0-9_]*$)/.test(r), { error: 'env: needs a variable name' });

export const RedisSettingsSchema = z
  .strictObject({
    host: text(255),
    port: int(1, 65_535).default(6379),
    /** TLS to the server (certificate verified against Node's CAs, or `tlsCa`). */
    tls: z.boolean({ error: 'must be true or false' }).default(false),
    /** PEM CA bundle when the server's CA is not in Node's store. */
    tlsCa: z.string().min(1).max(1_000_000).optional(),
    /** The admin ACL user: ACL SETUSER/DELUSER/USERS/GETUSER/SAVE, CLIENT KILL/LIST, CONFIG GET (aclSave 'auto'), MULTI/EXEC. */
    user: text(256).regex(/^[!-~]+$/, { error: 'must be visible ASCII without spaces' }),
    /** Inline admin password: for local development only; refused in AWS (aws.ts). */
    password: text(1024).optional(),
    passwordSecret: SecretRefSchema.optional(),
    userPrefix: z
      .string({ error: 'must be a string' })
      .min(1, { error: 'must not be empty' })
      .max(MAX_PREFIX_LENGTH, { error: `must be at most ${MAX_PREFIX_LENGTH} characters` })
      .regex(/^[a-z_][a-z0-9_-]*$/, { error: 'must be lower-case letters, digits, _ and -, not starting with a digit or -' })
      .default('tl_'),
    /**
     * ACL SAVE after each change, so a restart (which reloads the aclfile) cannot bring a revoked
     * user back. `auto` asks the server once (CONFIG GET aclfile); false where there is no aclfile
     * or CONFIG is not available (managed services).
     */
    aclSave: z.union([z.literal('auto'), z.boolean()], { error: "must be 'auto', true or false" }).default('auto'),
    /** Jobs in flight per driver (each may open one more connection, verify's login); the rest wait. */
    adminConcurrency: int(1, 100).default(4),
    connectTimeoutMs: int(100, 120_000).default(5_000),
    commandTimeoutMs: int(100, 120_000).default(10_000),
    /** How long revoke waits for a user's clients to leave CLIENT LIST before failing (retryably). */
    sessionDrainTimeoutMs: int(100, 300_000).default(5_000),
    /** Where the functions that reach this server run in AWS; read by the CDK stack, not the driver. */
    vpc: VpcSettingsSchema.optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.password === undefined) === (s.passwordSecret === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['password'], message: 'exactly one of password or passwordSecret is required' });
    }
  });
export type RedisSettings = z.output<typeof RedisSettingsSchema>;
export type RedisSettingsInput = z.input<typeof RedisSettingsSchema>;

/** Parses settings or throws a {@link ConfigError} whose message names each bad field. */
export function parseRedisSettings(raw: unknown, what = 'redis settings'): RedisSettings {
  const r = RedisSettingsSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`${what}: ${describeIssues(r.error)}`);
  return r.data;
}

export function parseRedisAccess(raw: unknown, what = 'redis access'): RedisAccess {
  const r = RedisAccessSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`${what}: ${describeIssues(r.error)}`);
  return r.data;
}
