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

/**
 * A RabbitMQ permission pattern (Erlang `re`, PCRE). Checked by compiling it as a JavaScript
 * RegExp, which accepts the common subset; '' grants nothing (RabbitMQ's own meaning).
 */
const PermissionRegex = z
  .string({ error: 'must be a string (a regular expression; empty grants nothing)' })
  .max(1024, { error: 'must be at most 1024 characters' })
  .regex(PRINTABLE, { error: 'must not contain control characters' })
  .refine(
    (r) => {
      try {
        new RegExp(r);
        return true;
      } catch {
        return false;
      }
    },
    { error: 'must be a valid regular expression' },
  );

/** What a task may do in one vhost: RabbitMQ's configure/write/read patterns over resource names. */
export const RabbitmqPermissionSchema = z.strictObject({
  configure: PermissionRegex,
  write: PermissionRegex,
  read: PermissionRegex,
});
export type RabbitmqPermission = z.output<typeof RabbitmqPermissionSchema>;

export const VhostNameSchema = text(255);

/**
 * An access level: permissions per vhost. The credential's `vhost` field is the first one listed.
 * Publishing through the default exchange needs `write` to match `amq.default`.
 */
export const RabbitmqAccessSchema = z.strictObject({
  /** The user's connection limit (RabbitMQ user limit `max-connections`): absent, no limit. */
  maxConnections: int(1, 10_000).optional(),
  vhosts: z
    .record(VhostNameSchema, RabbitmqPermissionSchema, { error: 'must map vhost names to { configure, write, read }' })
    .refine((v) => Object.keys(v).length >= 1, { error: 'must name at least one vhost' })
    .refine((v) => Object.keys(v).length <= 50, { error: 'must name at most 50 vhosts' }),
});
export type RabbitmqAccess = z.output<typeof RabbitmqAccessSchema>;

/**
 * A reference to the admin password: a Secrets Manager ARN or name (resolved by the runtime's
 * `resolveSecret`), `file:/path` (the file's content, one trailing newline dropped) or `env:NAME`
 * — the last two only outside AWS.
 */
export const SecretRefSchema = text(2048)
  .refine((r) => !r.startsWith('file:') || r.length > 'file:'.length, { error: 'file: needs a path' })
  .refine((r) => !r.startsWith('env:') || /^env:[A-Za-z_][A-Za-z0-9_]*$/.test(r), { error: 'env: needs a variable name' });

const urlOf = (protocols: string[], what: string) =>
  text(2048).superRefine((raw, ctx) => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      ctx.addIssue({ code: 'custom', message: `must be a URL (${what})` });
      return;
    }
    if (!protocols.includes(url.protocol)) {
      ctx.addIssue({ code: 'custom', message: `must use ${protocols.map((p) => `${p}//`).join(' or ')}` });
    }
    // Credentials belong in adminUser/adminPasswordSecret; in a URL they would reach logs and templates.
    if (url.username || url.password) ctx.addIssue({ code: 'custom', message: 'must not contain a user name or password' });
    if (url.search || url.hash) ctx.addIssue({ code: 'custom', message: 'must not contain a query or fragment' });
  });

export const RabbitmqSettingsSchema = z
  .strictObject({
    /** The management plugin's base URL (`https://rabbit.internal:15671/`); a path prefix is kept. */
    managementUrl: urlOf(['http:', 'https:'], 'of the management HTTP API'),
    /** Where workloads (and verify's login check) connect: `amqp://host:5672` or `amqps://host:5671`, no vhost, no credentials. */
    amqpUrl: urlOf(['amqp:', 'amqps:'], 'of the AMQP listener').refine((u) => /^amqps?:\/\/[^/]+\/?$/.test(u), {
      error: 'must not name a vhost (vhosts come from the access levels)',
    }),
    /** The admin: the `administrator` tag (users, permissions, closing connections). */
    adminUser: text(255),
    /** Inline admin password: for local development only; refused in AWS (aws.ts). */
    adminPassword: text(1024).optional(),
    adminPasswordSecret: SecretRefSchema.optional(),
    userPrefix: z
      .string({ error: 'must be a string' })
      .min(1, { error: 'must not be empty' })
      .max(MAX_PREFIX_LENGTH, { error: `must be at most ${MAX_PREFIX_LENGTH} characters` })
      .regex(/^[a-z][a-z0-9_.-]*$/, { error: 'must be a lower-case letter, then lower-case letters, digits, _ . or -' })
      .default('tl-'),
    /** Admin API requests one driver has in flight at most, whatever the bus sends it. */
    adminConcurrency: int(1, 100).default(4),
    /** Each management API request. */
    requestTimeoutMs: int(100, 120_000).default(5_000),
    /** verify's AMQP login. */
    connectTimeoutMs: int(100, 120_000).default(5_000),
    /** How long revoke keeps closing the user's connections before failing (retryably). */
    sessionDrainTimeoutMs: int(100, 300_000).default(10_000),
    /** Where the functions that reach this broker run in AWS; read by the CDK stack, not the driver. */
    vpc: VpcSettingsSchema.optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.adminPassword === undefined) === (s.adminPasswordSecret === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['adminPassword'], message: 'exactly one of adminPassword or adminPasswordSecret is required' });
    }
  });
export type RabbitmqSettings = z.output<typeof RabbitmqSettingsSchema>;
export type RabbitmqSettingsInput = z.input<typeof RabbitmqSettingsSchema>;

/** Parses settings or throws a {@link ConfigError} whose message names each bad field. */
export function parseRabbitmqSettings(raw: unknown, what = 'rabbitmq settings'): RabbitmqSettings {
  const r = RabbitmqSettingsSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`${what}: ${describeIssues(r.error)}`);
  return r.data;
}

export function parseRabbitmqAccess(raw: unknown, what = 'rabbitmq access'): RabbitmqAccess {
  const r = RabbitmqAccessSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`${what}: ${describeIssues(r.error)}`);
  return r.data;
}

/** The AMQP endpoint of the settings, ports defaulted by scheme. */
export function amqpEndpoint(settings: RabbitmqSettings): { host: string; port: number; tls: boolean } {
  const url = new URL(settings.amqpUrl);
  const tls = url.protocol === 'amqps:';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port: url.port ? Number(url.port) : tls ? 5671 : 5672, tls };
}
