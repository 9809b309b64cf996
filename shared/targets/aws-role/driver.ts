/**
 * The `aws-role` target (DESIGN §5): one STS session per credential.
 *
 * Issue: `sts:AssumeRole` on the configured role with
 *   - `RoleSessionName` = `tl.<task id, sanitised>.<hash of task+grant>` (≤ 64 chars), which is
 *     also the credential's externalId, so a crash can always be cleaned up;
 *   - `Policy` = the access level's session policy plus one statement allowing the probe action
 *     (a session can only do what both the role's policies and the session policy allow);
 *   - session tags `tasklease:task`, `tasklease:workload`, `tasklease:grant`;
 *   - `SourceIdentity` = `<last path segment>@<trust domain>+<hash of the SPIFFE ID>` (≤ 64);
 *   - `DurationSeconds` = lease duration clamped to [900, min(maxSessionSeconds, role's max)].
 * The role's trust policy must allow the broker `sts:AssumeRole`, `sts:TagSession` and
 * `sts:SetSourceIdentity`. Called from Lambda this is role chaining, which STS caps at 3600 s:
 * keep `maxSessionSeconds` at its default of 3600 there.
 *
 * Revoke: an STS session cannot be deleted, so the broker adds a Deny for exactly that session
 * (`aws:userid` = `<role id>:<session name>`) to a broker-managed inline policy on the role,
 * `tasklease-revocations`. Entries are grouped by the minute their session expires (the `Sid`
 * carries it) and pruned once that minute has passed, since the session is dead anyway. If the
 * document would still exceed IAM's 10,240-character limit, all per-session entries are replaced
 * by one role-wide Deny on `aws:TokenIssueTime` before now — which also ends every other live
 * session of this role (their tasks must ask again): a deliberate trade of availability for
 * revocation that can always be written. That statement is pruned once every session issued
 * before it has expired. The broker refuses to touch a role not tagged `tasklease:managed=true`.
 *
 * A session STS refused (an error response) was never issued: its rollback needs no deny and
 * verifies as rejected. After a timeout or 5xx a session may exist; without its credentials it
 * stays inconclusive and the ledger keeps it open (the deny covers any session of that name).
 *
 * Verify: the configured probe call made with the old session credentials. AccessDenied (or an
 * expired/unknown token) = rejected; success, or an error that only an authorised caller can get
 * (NoSuchEntity) = still-valid; anything else = inconclusive. The probe must be an action IAM
 * policies govern — `sts:GetCallerIdentity` needs no permission and can never be denied, so it
 * proves nothing and is refused. Probes:
 *   - `iam:GetRole` on the target role itself (default): read-only, needs no extra resource;
 *     IAM's control-plane rate limits apply, so very high revocation rates want another probe.
 *   - `ssm:GetParameter` on a configured parameter name: higher rate limits.
 * The role's identity policy must allow the probe action; `checkAtIssue` proves that once per
 * session (a probe that is always denied would "prove" every revocation instantly). Adding a
 * probe is one entry in AWS_ROLE_PROBES.
 */
import { credentialTags } from '../../aws/tags.ts';
import { createHash } from 'node:crypto';
import { GetRoleCommand, GetRolePolicyCommand, IAMClient, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import type { Role } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import * as z from 'zod';
import type { Grant } from '../../events/schemas.ts';
import { describeIssues } from '../../events/parse.ts';
import { ConfigError, TargetError } from '../../lease/errors.ts';
import type { IssueContext, IssuedCredential, RevokeContext, TargetDriver, VerifyContext, VerifyResult } from '../../lease/ports.ts';
import { awsHttpStatus, describeAwsError, isAwsError } from '../../aws/errors.ts';
import type { DriverDeps, DriverFactory } from '../driver.ts';

export const AWS_ROLE_KIND = 'aws-role';
/** The tag a role must carry before the broker assumes it or edits its policies. */
export const MANAGED_TAG = { key: 'tasklease:managed', value: 'true' } as const;
/** The broker-managed inline policy holding per-session denies. */
export const REVOCATION_POLICY_NAME = 'tasklease-revocations';
/** STS: the shortest session. */
export const STS_MIN_DURATION_SECONDS = 900;
/** STS: plaintext session policy limit. */
export const SESSION_POLICY_MAX_CHARS = 2048;
/** IAM: aggregate inline policy size of a role (whitespace not counted). */
export const INLINE_POLICY_MAX_CHARS = 10_240;
export const PROBE_STATEMENT_SID = 'TaskleaseRevocationProbe';

const SESSION_NAME_MAX = 64;
const SESSION_HASH_HEX = 16;
const SESSION_NAME_PREFIX = 'tl.';
const STS_NAME_CHARS = /[^\w+=,.@-]/g;
/** Slack for clock differences before an expired session's deny is pruned. */
const PRUNE_GRACE_MS = 5 * 60_000;
const BUCKET_SECONDS = 60;

// ─── Names ────────────────────────────────────────────────────────────────────

const sha256 = (...parts: string[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('hex');

/** `tl.<task id>.<16 hex>`: readable in CloudTrail, unique per (task, grant), ≤ 64 chars of [\w+=,.@-]. */
export function sessionNameFor(taskId: string, grant: Grant): string {
  const hash = sha256('tasklease/aws-role/v1', taskId, grant.target, grant.access).slice(0, SESSION_HASH_HEX);
  const room = SESSION_NAME_MAX - SESSION_NAME_PREFIX.length - 1 - SESSION_HASH_HEX;
  return `${SESSION_NAME_PREFIX}${taskId.replace(STS_NAME_CHARS, '-').slice(0, room)}.${hash}`;
}

/**
 * `<last path segment>@<trust domain>+<12 hex of the SPIFFE ID>`, within SourceIdentity's limits
 * (2–64 chars of [\w+=,.@-], not starting with `aws:`). The readable part may be cut or mapped;
 * the hash keeps it unambiguous.
 */
export function sourceIdentityFor(spiffeId: string): string {
  const m = /^spiffe:\/\/([^/]+)(\/.*)?$/.exec(spiffeId);
  const trustDomain = m?.[1] ?? 'unknown';
  const last = (m?.[2] ?? '').split('/').filter(Boolean).pop() ?? '';
  const readable = `${last}@${trustDomain}`.replace(STS_NAME_CHARS, '_').slice(0, 64 - 1 - 12);
  return `${readable}+${sha256('tasklease/source-identity/v1', spiffeId).slice(0, 12)}`;
}


// ─── Config ───────────────────────────────────────────────────────────────────

const ROLE_ARN = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:[\x21-\x7e]*\/)?([\w+=,.@-]{1,64})$/;

export const AwsRoleProbeSchema = z
  .strictObject({
    action: z.string().min(1),
    /** ssm:GetParameter: the parameter the session reads. */
    parameterName: z.string().regex(/^\/?[A-Za-z0-9_.\-/]{1,2048}$/).optional(),
    /** Probe once right after AssumeRole, so a probe the role never allowed cannot fake a proof. */
    checkAtIssue: z.boolean().default(true),
  })
  .superRefine((p, ctx) => {
    if (/^sts:GetCallerIdentity$/i.test(p.action)) {
      ctx.addIssue({
        code: 'custom',
        path: ['action'],
        message: 'sts:GetCallerIdentity needs no permission and can never be denied, so it cannot prove a revocation; use iam:GetRole or ssm:GetParameter',
      });
      return;
    }
    if (!(p.action in AWS_ROLE_PROBES)) {
      ctx.addIssue({ code: 'custom', path: ['action'], message: `unknown probe (known: ${Object.keys(AWS_ROLE_PROBES).join(', ')})` });
      return;
    }
    if (p.action === 'ssm:GetParameter' && !p.parameterName) {
      ctx.addIssue({ code: 'custom', path: ['parameterName'], message: 'is required for the ssm:GetParameter probe' });
    }
  });
export type AwsRoleProbeSettings = z.output<typeof AwsRoleProbeSchema>;

export const AwsRoleSettingsSchema = z.strictObject({
  roleArn: z.string().regex(ROLE_ARN, { message: 'must be an IAM role ARN such as arn:aws:iam::123456789012:role/tasklease-orders' }),
  /** Region for STS and the probe. Default: AWS_REGION. */
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, { message: 'must be an AWS region such as eu-west-1' }).optional(),
  maxSessionSeconds: z.number().int().min(STS_MIN_DURATION_SECONDS).max(43_200).default(3600),
  /** `sts:ExternalId` the role's trust policy requires, if any (not a secret). */
  externalId: z.string().regex(/^[\w+=,.@:/-]{2,1224}$/).optional(),
  probe: AwsRoleProbeSchema.prefault({ action: 'iam:GetRole' }),
  /** Size budget of the revocation policy; lower it when the role has other inline policies. */
  revocationPolicyMaxChars: z.number().int().min(1024).max(INLINE_POLICY_MAX_CHARS).default(INLINE_POLICY_MAX_CHARS),
});
export type AwsRoleSettings = z.output<typeof AwsRoleSettingsSchema>;
export type AwsRoleSettingsInput = z.input<typeof AwsRoleSettingsSchema>;

const PolicyStatementSchema = z.looseObject({
  Sid: z.string().regex(/^[A-Za-z0-9]*$/, { message: 'must be alphanumeric' }).optional(),
  Effect: z.enum(['Allow', 'Deny']),
});

export const AwsRoleAccessSchema = z.strictObject({
  /** IAM policy document that narrows the role for this access level. */
  sessionPolicy: z.looseObject({
    Version: z.literal('2012-10-17').default('2012-10-17'),
    Statement: z.array(PolicyStatementSchema).min(1),
  }),
});
export type AwsRoleAccess = z.output<typeof AwsRoleAccessSchema>;

/** A session's expiry: the recorded natural expiry, else the one STS returned (metadata). */
function sessionExpiry(ctx: RevokeContext): number | undefined {
  return ctx.naturalExpiry ?? (ctx.metadata?.expiration ? Date.parse(ctx.metadata.expiration) : undefined);
}

/** How long one revocation-policy edit may hold the shared lock (a Get and a Put). */
const POLICY_LOCK_TTL_MS = 15_000;

/** Clock slack when bounding a session by its intent's time. */
const INTENT_SLACK_MS = 5 * 60_000;

// ─── Probes ───────────────────────────────────────────────────────────────────

/** Static session credentials, as the SDK clients accept them. */
export interface AwsCredentialIdentity {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

export interface ProbeTarget {
  partition: string;
  account: string;
  region: string;
  roleArn: string;
  roleName: string;
}

export interface AwsRoleProbe {
  /** The IAM action performed; allowed in every session policy the driver writes. */
  readonly action: string;
  /** The ARN it is performed on. */
  readonly resource: string;
  /** Resolves when AWS authorised the call, rejects with the SDK error otherwise. */
  call(credentials: AwsCredentialIdentity): Promise<void>;
  /** Errors only an authorised caller can get (the credential still works). */
  readonly authorisedErrors: readonly string[];
}

type ProbeFactory = (settings: AwsRoleProbeSettings, target: ProbeTarget) => AwsRoleProbe;

/** The probe calls; each is performed with the session's own credentials, one attempt. */
export const AWS_ROLE_PROBES: Record<string, ProbeFactory> = {
  'iam:GetRole': (_settings, t) => ({
    action: 'iam:GetRole',
    resource: t.roleArn,
    authorisedErrors: ['NoSuchEntityException'],
    async call(credentials) {
      const client = new IAMClient({ region: t.region, credentials, maxAttempts: 1 });
      try {
        await client.send(new GetRoleCommand({ RoleName: t.roleName }));
      } finally {
        client.destroy();
      }
    },
  }),
  'ssm:GetParameter': (settings, t) => {
    const name = settings.parameterName as string;
    return {
      action: 'ssm:GetParameter',
      resource: `arn:${t.partition}:ssm:${t.region}:${t.account}:parameter${name.startsWith('/') ? name : `/${name}`}`,
      authorisedErrors: ['ParameterNotFound'],
      async call(credentials) {
        // Loaded on first use: only deployments with this probe carry the SSM client's weight at run time.
        const { GetParameterCommand, SSMClient } = await import('@aws-sdk/client-ssm');
        const client = new SSMClient({ region: t.region, credentials, maxAttempts: 1 });
        try {
          await client.send(new GetParameterCommand({ Name: name }));
        } finally {
          client.destroy();
        }
      },
    };
  },
};

/** Errors that mean AWS refused the credential itself or its permission: the revocation holds. */
const REJECTED_ERRORS = [
  'AccessDenied',
  'AccessDeniedException',
  'ExpiredToken',
  'ExpiredTokenException',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
];

// ─── Revocation policy document ───────────────────────────────────────────────

export interface PolicyStatement {
  Sid?: string;
  Effect: string;
  Action?: string | string[];
  Resource?: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
  [key: string]: unknown;
}
export interface PolicyDocument {
  Version: string;
  Statement: PolicyStatement[];
}

const SESSION_SID = /^TL(\d{10,})$/;
const CUTOFF_SID = /^TLCUT(\d{10,})$/;

export function parsePolicyDocument(text: string | undefined): PolicyDocument {
  if (!text) return { Version: '2012-10-17', Statement: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // GetRolePolicy returns the document URL-encoded (RFC 3986).
    parsed = JSON.parse(decodeURIComponent(text));
  }
  const doc = parsed as Partial<PolicyDocument>;
  const statements = Array.isArray(doc.Statement) ? doc.Statement : doc.Statement ? [doc.Statement as PolicyStatement] : [];
  return { Version: doc.Version ?? '2012-10-17', Statement: statements };
}

const userIdsOf = (s: PolicyStatement): string[] => {
  const v = s.Condition?.StringLike?.['aws:userid'];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
};

export interface RevocationChange {
  document: PolicyDocument;
  /** The document differs from the input (something added or pruned). */
  changed: boolean;
  /** `session`: a per-session deny; `cutoff`: the role-wide fallback; `present`: already denied. */
  mode: 'session' | 'cutoff' | 'present';
  pruned: number;
}

/**
 * Adds a deny for one session (`aws:userid`) to the revocation document, pruning entries of
 * sessions that have expired; falls back to a role-wide `aws:TokenIssueTime` cutoff when the
 * document would exceed `maxChars`. Pure: the caller reads and writes IAM.
 */
export function addSessionDeny(
  input: PolicyDocument,
  session: { userId: string; expiresAt: number },
  options: { now: number; maxChars: number; maxSessionMs: number },
): RevocationChange {
  const { now } = options;
  let pruned = 0;
  const kept = input.Statement.filter((s) => {
    const bucket = SESSION_SID.exec(s.Sid ?? '');
    const cutoff = CUTOFF_SID.exec(s.Sid ?? '');
    const expired =
      (bucket !== null && Number(bucket[1]) * 1000 + PRUNE_GRACE_MS < now) ||
      (cutoff !== null && Number(cutoff[1]) * 1000 + options.maxSessionMs + PRUNE_GRACE_MS < now);
    if (expired) pruned++;
    return !expired;
  });
  if (kept.some((s) => SESSION_SID.test(s.Sid ?? '') && userIdsOf(s).includes(session.userId))) {
    return { document: { Version: '2012-10-17', Statement: kept }, changed: pruned > 0, mode: 'present', pruned };
  }

  const bucketSec = Math.ceil(session.expiresAt / 1000 / BUCKET_SECONDS) * BUCKET_SECONDS;
  const sid = `TL${bucketSec}`;
  const existing = kept.find((s) => s.Sid === sid);
  const statements = existing
    ? kept.map((s) => (s === existing ? denyStatement(sid, [...userIdsOf(s), session.userId]) : s))
    : [...kept, denyStatement(sid, [session.userId])];
  statements.sort((a, b) => (a.Sid ?? '').localeCompare(b.Sid ?? ''));
  const document: PolicyDocument = { Version: '2012-10-17', Statement: statements };
  if (JSON.stringify(document).length <= options.maxChars) return { document, changed: true, mode: 'session', pruned };

  // Too many live revocations: one statement denying every session issued before now, rounded
  // up (a session issued in this very second is covered), plus this session's own deny, so it is
  // covered whatever the clocks say.
  const nowSec = Math.ceil(now / 1000) + 1;
  const others = kept.filter((s) => !SESSION_SID.test(s.Sid ?? '') && !CUTOFF_SID.test(s.Sid ?? ''));
  const cutoff: PolicyStatement = {
    Sid: `TLCUT${nowSec}`,
    Effect: 'Deny',
    Action: '*',
    Resource: '*',
    Condition: { DateLessThan: { 'aws:TokenIssueTime': new Date(nowSec * 1000).toISOString().replace('.000Z', 'Z') } },
  };
  const fallback: PolicyDocument = { Version: '2012-10-17', Statement: [...others, cutoff, denyStatement(sid, [session.userId])] };
  if (JSON.stringify(fallback).length > options.maxChars) {
    throw new TargetError(`inline policy ${REVOCATION_POLICY_NAME} cannot fit even a role-wide deny; remove foreign statements from it`, { retryable: false });
  }
  return { document: fallback, changed: true, mode: 'cutoff', pruned };
}

function denyStatement(sid: string, userIds: string[]): PolicyStatement {
  return { Sid: sid, Effect: 'Deny', Action: '*', Resource: '*', Condition: { StringLike: { 'aws:userid': [...new Set(userIds)].sort() } } };
}

// ─── Driver ───────────────────────────────────────────────────────────────────

export interface AwsRoleClients {
  sts: STSClient;
  iam: IAMClient;
}

export class AwsRoleDriver implements TargetDriver {
  readonly kind = AWS_ROLE_KIND;
  private readonly roleName: string;
  private readonly probe: AwsRoleProbe;
  private readonly sessionPolicies = new Map<string, string>();
  private readonly now: () => number;
  /**
   * Sessions STS answered with an error response (so it issued nothing), remembered in this
   * process so the rollback that follows can tell "never issued" from "issued, unproven".
   * After a timeout or a 5xx a session may exist: those are not remembered.
   */
  private readonly refused = new Set<string>();
  /** STS's and the probe's region. */
  private readonly region: string;

  constructor(
    readonly name: string,
    private readonly settings: AwsRoleSettings,
    access: Record<string, AwsRoleAccess>,
    private readonly clients: AwsRoleClients,
    options: { now?: () => number; lock?: DriverDeps['lock'] } = {},
  ) {
    this.lock = options.lock;
    const m = ROLE_ARN.exec(settings.roleArn);
    if (!m) throw new ConfigError(`target ${name}: settings.roleArn: not an IAM role ARN`);
    const [, partition = 'aws', account = '', roleName = ''] = m;
    this.roleName = roleName;
    this.now = options.now ?? Date.now;
    const region = (this.region = settings.region ?? process.env.AWS_REGION ?? 'us-east-1');
    const factory = AWS_ROLE_PROBES[settings.probe.action];
    if (!factory) throw new ConfigError(`target ${name}: settings.probe.action: unknown probe ${settings.probe.action}`);
    this.probe = factory(settings.probe, { partition, account, region, roleArn: settings.roleArn, roleName });

    for (const [level, { sessionPolicy }] of Object.entries(access)) {
      if (sessionPolicy.Statement.some((s) => s.Sid === PROBE_STATEMENT_SID)) {
        throw new ConfigError(`target ${name}: access.${level}.sessionPolicy: Sid ${PROBE_STATEMENT_SID} is reserved for the revocation probe`);
      }
      const policy = JSON.stringify({
        ...sessionPolicy,
        Statement: [...sessionPolicy.Statement, { Sid: PROBE_STATEMENT_SID, Effect: 'Allow', Action: this.probe.action, Resource: this.probe.resource }],
      });
      if (policy.length > SESSION_POLICY_MAX_CHARS) {
        throw new ConfigError(
          `target ${name}: access.${level}.sessionPolicy: ${policy.length} characters with the probe statement; STS allows ${SESSION_POLICY_MAX_CHARS}`,
        );
      }
      this.sessionPolicies.set(level, policy);
    }
  }

  externalId(taskId: string, grant: Grant): string {
    return sessionNameFor(taskId, grant);
  }

  async issue(ctx: IssueContext): Promise<IssuedCredential> {
    const policy = this.sessionPolicies.get(ctx.grant.access);
    if (!policy) throw new TargetError(`target ${this.name} has no access level ${ctx.grant.access}`, { retryable: false });
    const role = await this.managedRole('assume');
    if (!role) throw new TargetError(`role ${this.settings.roleArn} does not exist`, { retryable: false });
    const maxSeconds = Math.min(this.settings.maxSessionSeconds, role.MaxSessionDuration ?? 3600);
    const duration = Math.min(Math.max(Math.ceil(ctx.lease.durationSeconds), STS_MIN_DURATION_SECONDS), maxSeconds);

    let out;
    try {
      out = await this.clients.sts.send(
        new AssumeRoleCommand({
          RoleArn: this.settings.roleArn,
          RoleSessionName: ctx.externalId,
          Policy: policy,
          DurationSeconds: duration,
          SourceIdentity: sourceIdentityFor(ctx.lease.workload),
          Tags: credentialTags(ctx.lease.taskId, ctx.lease.workload, ctx.grant),
          ...(this.settings.externalId ? { ExternalId: this.settings.externalId } : {}),
        }),
      );
    } catch (err) {
      const status = awsHttpStatus(err);
      if (status !== undefined && status >= 400 && status < 500) this.remember(this.refused, ctx.externalId);
      const permanent = isAwsError(err, 'AccessDenied', 'MalformedPolicyDocument', 'PackedPolicyTooLarge', 'RegionDisabled', 'ValidationError');
      throw new TargetError(`sts AssumeRole ${this.settings.roleArn} failed: ${describeAwsError(err)}`, { retryable: !permanent });
    }
    this.refused.delete(ctx.externalId);
    const c = out.Credentials;
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) {
      throw new TargetError(`sts AssumeRole ${this.settings.roleArn} returned no credentials`);
    }
    const credentials: AwsCredentialIdentity = { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken };
    if (this.settings.probe.checkAtIssue && (await this.runProbe(credentials)) === 'rejected') {
      // The revocation proof would be meaningless. Deny the session now; the core rolls back.
      await this.revoke({ taskId: ctx.lease.taskId, grant: ctx.grant, externalId: ctx.externalId, naturalExpiry: c.Expiration.getTime() });
      throw new TargetError(
        `probe ${this.probe.action} on ${this.probe.resource} is denied for a fresh session of ${this.settings.roleArn}; ` +
          `allow it in the role's policy, or revocation could not be proven`,
        { retryable: false },
      );
    }
    const expiration = c.Expiration.toISOString();
    return {
      secret: {
        accessKeyId: c.AccessKeyId,
        secretAccessKey: c.SecretAccessKey,
        sessionToken: c.SessionToken,
        expiration,
        roleArn: this.settings.roleArn,
        region: this.region,
      },
      naturalExpiry: c.Expiration.getTime(),
      metadata: {
        roleId: role.RoleId ?? '',
        sessionName: ctx.externalId,
        assumedRoleArn: out.AssumedRoleUser?.Arn ?? '',
        expiration,
      },
    };
  }

  async revoke(ctx: RevokeContext): Promise<void> {
    if (this.refused.has(ctx.externalId)) return; // STS issued nothing
    const now = this.now();
    const expiresAt = sessionExpiry(ctx);
    // An expired session is rejected by STS itself; nothing to add.
    if (expiresAt !== undefined && expiresAt <= now) return;
    const role = await this.managedRole('revoke');
    if (!role) return; // a deleted role's sessions stop working; a re-created role has a new id
    const roleId = role.RoleId ?? ctx.metadata?.roleId;
    if (!roleId) throw new TargetError(`role ${this.settings.roleArn} has no RoleId`);
    const maxSessionMs = Math.max(role.MaxSessionDuration ?? 3600, this.settings.maxSessionSeconds) * 1000;

    // The revocation policy is one document edited read-modify-write: two revocations interleaving
    // would each write a copy without the other's deny. serialisePolicyEdit runs them one at a time,
    // across containers too when the runtime supplies its shared lock.
    await this.serialisePolicyEdit(async () => {
      let current: string | undefined;
      try {
        current = (await this.clients.iam.send(new GetRolePolicyCommand({ RoleName: this.roleName, PolicyName: REVOCATION_POLICY_NAME }))).PolicyDocument;
      } catch (err) {
        if (!isAwsError(err, 'NoSuchEntityException', 'NoSuchEntity')) throw this.iamError('GetRolePolicy', err);
      }
      const change = addSessionDeny(
        parsePolicyDocument(current),
        // Without a recorded expiry (a crash before it was recorded) assume the longest possible session.
        { userId: `${roleId}:${ctx.externalId}`, expiresAt: expiresAt ?? now + maxSessionMs },
        { now, maxChars: this.settings.revocationPolicyMaxChars, maxSessionMs },
      );
      if (!change.changed) return;
      try {
        await this.clients.iam.send(
          new PutRolePolicyCommand({ RoleName: this.roleName, PolicyName: REVOCATION_POLICY_NAME, PolicyDocument: JSON.stringify(change.document) }),
        );
      } catch (err) {
        throw this.iamError('PutRolePolicy', err);
      }
    });
  }

  private policyEdits: Promise<unknown> = Promise.resolve();
  private readonly lock: DriverDeps['lock'];

  /**
   * Runs policy edits one after another in this process and, given the runtime's shared lock,
   * one at a time across every broker process; a failed edit does not block the next.
   */
  private serialisePolicyEdit(edit: () => Promise<void>): Promise<void> {
    const locked = this.lock ? () => (this.lock as NonNullable<DriverDeps['lock']>)(`aws-role-policy:${this.settings.roleArn}`, POLICY_LOCK_TTL_MS, edit) : edit;
    const run = this.policyEdits.then(locked, locked);
    this.policyEdits = run.catch(() => undefined);
    return run;
  }

  async verify(ctx: VerifyContext): Promise<VerifyResult> {
    const expiresAt = sessionExpiry(ctx);
    if (expiresAt !== undefined && expiresAt <= this.now()) return 'rejected';
    // Nothing is known of the session (an ambiguous AssumeRole failure): none issued after the
    // intent can outlive the longest session STS would grant, plus clock slack.
    if (expiresAt === undefined && ctx.intentAt !== undefined && ctx.intentAt + this.settings.maxSessionSeconds * 1000 + INTENT_SLACK_MS <= this.now()) {
      return 'rejected';
    }
    if (this.refused.has(ctx.externalId) && !ctx.metadata?.sessionName) return 'rejected';
    const s = ctx.secret;
    if (!s?.accessKeyId || !s.secretAccessKey || !s.sessionToken) return 'inconclusive';
    return this.runProbe({ accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, sessionToken: s.sessionToken });
  }

  private async runProbe(credentials: AwsCredentialIdentity): Promise<VerifyResult> {
    try {
      await this.probe.call(credentials);
      return 'still-valid';
    } catch (err) {
      if (isAwsError(err, ...REJECTED_ERRORS)) return 'rejected';
      if (isAwsError(err, ...this.probe.authorisedErrors)) return 'still-valid';
      return 'inconclusive';
    }
  }

  private remember(set: Set<string>, value: string): void {
    set.add(value);
    if (set.size > 1000) set.delete(set.values().next().value as string);
  }

  /** GetRole, refusing a role without the managed tag; undefined when the role does not exist. */
  private async managedRole(purpose: 'assume' | 'revoke'): Promise<Role | undefined> {
    let role: Role | undefined;
    try {
      role = (await this.clients.iam.send(new GetRoleCommand({ RoleName: this.roleName }))).Role;
    } catch (err) {
      if (isAwsError(err, 'NoSuchEntityException', 'NoSuchEntity')) return undefined;
      throw this.iamError('GetRole', err);
    }
    const managed = role?.Tags?.some((t) => t.Key === MANAGED_TAG.key && t.Value === MANAGED_TAG.value);
    if (!role || !managed) {
      throw new TargetError(
        `role ${this.settings.roleArn} is not tagged ${MANAGED_TAG.key}=${MANAGED_TAG.value}; tasklease will not ${purpose === 'assume' ? 'assume it' : 'edit its policies'}`,
        { retryable: false },
      );
    }
    return role;
  }

  private iamError(op: string, err: unknown): TargetError {
    return new TargetError(`iam ${op} ${this.roleName} failed: ${describeAwsError(err)}`, {
      retryable: !isAwsError(err, 'AccessDenied', 'MalformedPolicyDocumentException', 'LimitExceededException'),
    });
  }
}

function clientsFrom(deps: DriverDeps, region: string | undefined): AwsRoleClients {
  const given = deps.aws ?? {};
  const make = <C>(Client: new (config: { region?: string }) => C): C => (deps.awsClient ? deps.awsClient(Client, region) : new Client(region ? { region } : {}));
  const sts = given.sts instanceof STSClient ? given.sts : make(STSClient);
  const iam = given.iam instanceof IAMClient ? given.iam : make(IAMClient);
  return { sts, iam };
}

export const awsRoleDriverFactory: DriverFactory<AwsRoleSettings, AwsRoleAccess> = {
  kind: AWS_ROLE_KIND,
  settingsSchema: AwsRoleSettingsSchema,
  accessSchema: AwsRoleAccessSchema,
  create(target, deps) {
    const parsed = AwsRoleSettingsSchema.safeParse(target.settings);
    if (!parsed.success) throw new ConfigError(`target ${target.name}: settings: ${describeIssues(parsed.error)}`);
    const access: Record<string, AwsRoleAccess> = {};
    for (const [level, value] of Object.entries(target.access)) {
      const r = AwsRoleAccessSchema.safeParse(value);
      if (!r.success) throw new ConfigError(`target ${target.name}: access.${level}: ${describeIssues(r.error)}`);
      access[level] = r.data;
    }
    return new AwsRoleDriver(target.name, parsed.data, access, clientsFrom(deps, parsed.data.region), { lock: deps.lock });
  },
};
