/**
 * A small behavioural stand-in for the AWS services tasklease calls that cannot run here (STS, IAM,
 * Secrets Manager, EventBridge, SQS, Step Functions), installed with aws-sdk-client-mock. Every
 * request is still recorded by the mocks, so tests assert the exact inputs; the fake answers the
 * way AWS would, so the real handlers can run a whole lease cycle:
 *   - STS AssumeRole mints session credentials for a managed role;
 *   - IAM GetRole made *with a session's credentials* (the revocation probe) is evaluated against
 *     the role's `tasklease-revocations` policy (per-session `aws:userid` denies and the
 *     `aws:TokenIssueTime` cutoff), the session policy and the session's expiry, with a
 *     configurable propagation delay for policy changes;
 *   - IAM ListRolePolicies lists the role's inline policies; PutRolePolicy can be made to fail, or
 *     to enforce IAM's aggregate inline-policy limit (`enforceAggregateInlineLimit`);
 *   - Secrets Manager keeps secrets in a map (value, KMS key, tags, resource policy).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import type { PutEventsRequestEntry } from '@aws-sdk/client-eventbridge';
import {
  GetRoleCommand,
  GetRolePolicyCommand,
  IAMClient,
  ListRolePoliciesCommand,
  NoSuchEntityException,
  PutRolePolicyCommand,
} from '@aws-sdk/client-iam';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutResourcePolicyCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { AssumeRoleCommand, GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';

export const ACCOUNT = '123456789012';
export const REGION = 'eu-west-1';
export const BROKER_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/tasklease-broker`;
export const BROKER_SESSION_ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/tasklease-broker/broker-fn`;

/** An SDK-shaped service error (name, message, HTTP status). */
export function awsError(name: string, message: string, status = 400): Error {
  return Object.assign(new Error(message), { name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } });
}

export interface FakeRole {
  name: string;
  arn: string;
  roleId: string;
  tags: Record<string, string>;
  maxSessionDuration: number;
  /** The role's identity policy allows the probe action (iam:GetRole on itself). */
  allowsProbe: boolean;
  inlinePolicies: Map<string, string>;
}

export interface FakeSession {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  roleName: string;
  sessionName: string;
  issuedAt: number;
  expiresAt: number;
  policy?: string;
}

export interface FakeSecret {
  name: string;
  arn: string;
  value?: string;
  kmsKeyId?: string;
  tags: Record<string, string>;
  resourcePolicy?: string;
  blockPublicPolicy?: boolean;
}

interface PolicyChange {
  /** When the new document takes effect for authorisation (IAM propagation). */
  effectiveAt: number;
  before: string | undefined;
}

export class FakeAws {
  readonly roles = new Map<string, FakeRole>();
  readonly sessions = new Map<string, FakeSession>();
  readonly secrets = new Map<string, FakeSecret>();
  readonly events: PutEventsRequestEntry[] = [];
  readonly sqsMessages: Array<{ QueueUrl?: string; MessageBody?: string; DelaySeconds?: number }> = [];
  readonly taskAnswers: Array<{ kind: 'success' | 'failure'; input: Record<string, unknown> }> = [];
  /** Every SecretString ever written (kept across clearHistory, for leak checks). */
  readonly writtenSecretValues: string[] = [];
  /** How long a PutRolePolicy takes to affect authorisation. */
  propagationMs = 0;
  now: () => number = Date.now;
  /** Next AssumeRole calls fail with these errors, in order. */
  readonly assumeRoleFailures: Error[] = [];
  /** Next GetRole calls made with session credentials (probes) fail with these errors. */
  readonly probeFailures: Error[] = [];
  /** Next PutRolePolicy calls fail with these errors (nothing is written). */
  readonly putRolePolicyFailures: Error[] = [];
  /**
   * PutRolePolicy refuses (LimitExceeded) a document that would take the role's inline policies
   * together past IAM's 10,240 characters, whitespace not counted. Off by default: until it was
   * added the fake checked only the one document's own length.
   */
  enforceAggregateInlineLimit = false;

  readonly sts = mockClient(STSClient);
  readonly iam = mockClient(IAMClient);
  readonly sm = mockClient(SecretsManagerClient);
  readonly eb = mockClient(EventBridgeClient);
  readonly sqs = mockClient(SQSClient);
  readonly sfn = mockClient(SFNClient);
  private readonly changes = new Map<string, PolicyChange>();

  constructor() {
    this.install();
  }

  /** Clears recorded calls and state, keeps the behaviour. */
  reset(): void {
    for (const stub of [this.sts, this.iam, this.sm, this.eb, this.sqs, this.sfn]) stub.reset();
    this.roles.clear();
    this.sessions.clear();
    this.secrets.clear();
    this.events.length = 0;
    this.sqsMessages.length = 0;
    this.taskAnswers.length = 0;
    this.assumeRoleFailures.length = 0;
    this.probeFailures.length = 0;
    this.putRolePolicyFailures.length = 0;
    this.enforceAggregateInlineLimit = false;
    this.changes.clear();
    this.propagationMs = 0;
    this.install();
  }

  /** Forgets recorded calls, events and messages; keeps roles, sessions, secrets and behaviour. */
  clearHistory(): void {
    for (const stub of [this.sts, this.iam, this.sm, this.eb, this.sqs, this.sfn]) stub.resetHistory();
    this.events.length = 0;
    this.sqsMessages.length = 0;
    this.taskAnswers.length = 0;
  }

  restore(): void {
    for (const stub of [this.sts, this.iam, this.sm, this.eb, this.sqs, this.sfn]) stub.restore();
  }

  addRole(name: string, options: Partial<Omit<FakeRole, 'name' | 'arn' | 'inlinePolicies'>> = {}): FakeRole {
    const role: FakeRole = {
      name,
      arn: `arn:aws:iam::${ACCOUNT}:role/${name}`,
      roleId: `AROA${randomBytes(8).toString('hex').toUpperCase()}`,
      tags: { 'tasklease:managed': 'true' },
      maxSessionDuration: 3600,
      allowsProbe: true,
      ...options,
      inlinePolicies: new Map(),
    };
    this.roles.set(name, role);
    return role;
  }

  /** Stores a plain secret (an admin password) as an operator would. */
  addSecret(name: string, value: string): FakeSecret {
    const secret: FakeSecret = { name, arn: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${name}-AbCdEf`, value, tags: {} };
    this.secrets.set(name, secret);
    return secret;
  }

  revocationPolicy(roleName: string): { Statement: Array<Record<string, unknown>> } | undefined {
    const doc = this.roles.get(roleName)?.inlinePolicies.get('tasklease-revocations');
    return doc ? (JSON.parse(doc) as { Statement: Array<Record<string, unknown>> }) : undefined;
  }

  /** Every string any fake service was handed that must stay secret (for leak checks). */
  sessionSecrets(): string[] {
    return [...this.sessions.values()].flatMap((s) => [s.secretAccessKey, s.sessionToken]);
  }

  private install(): void {
    this.sts.on(GetCallerIdentityCommand).resolves({ Account: ACCOUNT, Arn: BROKER_SESSION_ARN, UserId: 'AROABROKER:broker-fn' });
    this.sts.on(AssumeRoleCommand).callsFake((input: Record<string, unknown>) => this.assumeRole(input));
    this.iam.on(GetRoleCommand).callsFake(async (input: { RoleName: string }, getClient: () => unknown) => {
      const client = getClient() as { config: { credentials: () => Promise<{ accessKeyId: string }> } };
      const { accessKeyId } = await client.config.credentials();
      return this.getRole(input.RoleName, this.sessions.get(accessKeyId));
    });
    this.iam.on(GetRolePolicyCommand).callsFake((input: { RoleName: string; PolicyName: string }) => {
      const doc = this.role(input.RoleName).inlinePolicies.get(input.PolicyName);
      if (!doc)
        throw new NoSuchEntityException({
          message: `The role policy with name ${input.PolicyName} cannot be found.`,
          $metadata: { httpStatusCode: 404 },
        });
      // IAM returns policy documents URL-encoded.
      return { RoleName: input.RoleName, PolicyName: input.PolicyName, PolicyDocument: encodeURIComponent(doc) };
    });
    this.iam.on(ListRolePoliciesCommand).callsFake((input: { RoleName: string }) => ({
      PolicyNames: [...this.role(input.RoleName).inlinePolicies.keys()].sort(),
      IsTruncated: false,
    }));
    this.iam.on(PutRolePolicyCommand).callsFake((input: { RoleName: string; PolicyName: string; PolicyDocument: string }) => {
      const role = this.role(input.RoleName);
      const failure = this.putRolePolicyFailures.shift();
      if (failure) throw failure;
      if (input.PolicyDocument.length > 10_240) throw awsError('LimitExceededException', 'Maximum policy size of 10240 bytes exceeded');
      if (this.enforceAggregateInlineLimit) {
        const counted = (doc: string) => doc.replace(/\s/g, '').length;
        let total = counted(input.PolicyDocument);
        for (const [name, doc] of role.inlinePolicies) if (name !== input.PolicyName) total += counted(doc);
        if (total > 10_240)
          throw awsError('LimitExceededException', `Maximum policy size of 10240 bytes exceeded for role ${role.name}`, 409);
      }
      this.changes.set(`${input.RoleName}/${input.PolicyName}`, {
        effectiveAt: this.now() + this.propagationMs,
        before: role.inlinePolicies.get(input.PolicyName),
      });
      role.inlinePolicies.set(input.PolicyName, input.PolicyDocument);
      return {};
    });

    this.sm
      .on(CreateSecretCommand)
      .callsFake((input: { Name: string; KmsKeyId?: string; Tags?: Array<{ Key: string; Value: string }>; SecretString?: string }) => {
        if (this.secrets.has(input.Name))
          throw new ResourceExistsException({
            message: `The operation failed because the secret ${input.Name} already exists.`,
            $metadata: { httpStatusCode: 400 },
          });
        const secret: FakeSecret = {
          name: input.Name,
          arn: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:${input.Name}-${randomBytes(3).toString('hex')}`,
          value: input.SecretString,
          kmsKeyId: input.KmsKeyId,
          tags: Object.fromEntries((input.Tags ?? []).map((t) => [t.Key, t.Value])),
        };
        this.secrets.set(input.Name, secret);
        return { ARN: secret.arn, Name: secret.name };
      });
    this.sm.on(PutResourcePolicyCommand).callsFake((input: { SecretId: string; ResourcePolicy: string; BlockPublicPolicy?: boolean }) => {
      const secret = this.secret(input.SecretId);
      secret.resourcePolicy = input.ResourcePolicy;
      secret.blockPublicPolicy = input.BlockPublicPolicy;
      return { ARN: secret.arn, Name: secret.name };
    });
    this.sm.on(PutSecretValueCommand).callsFake((input: { SecretId: string; SecretString: string }) => {
      const secret = this.secret(input.SecretId);
      secret.value = input.SecretString;
      this.writtenSecretValues.push(input.SecretString);
      return { ARN: secret.arn, Name: secret.name, VersionId: randomUUID() };
    });
    this.sm.on(GetSecretValueCommand).callsFake((input: { SecretId: string }) => {
      const secret = this.secret(input.SecretId);
      if (secret.value === undefined)
        throw new ResourceNotFoundException({
          message: "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT",
          $metadata: { httpStatusCode: 400 },
        });
      return { ARN: secret.arn, Name: secret.name, SecretString: secret.value };
    });
    this.sm.on(DeleteSecretCommand).callsFake((input: { SecretId: string }) => {
      const secret = this.secret(input.SecretId);
      this.secrets.delete(secret.name);
      return { ARN: secret.arn, Name: secret.name, DeletionDate: new Date() };
    });
    this.sm.on(DescribeSecretCommand).callsFake((input: { SecretId: string }) => {
      const secret = this.secret(input.SecretId);
      return { ARN: secret.arn, Name: secret.name, KmsKeyId: secret.kmsKeyId };
    });

    this.eb.on(PutEventsCommand).callsFake((input: { Entries: PutEventsRequestEntry[] }) => {
      this.events.push(...input.Entries);
      return { FailedEntryCount: 0, Entries: input.Entries.map(() => ({ EventId: randomUUID() })) };
    });
    this.sqs.on(SendMessageCommand).callsFake((input: { QueueUrl?: string; MessageBody?: string; DelaySeconds?: number }) => {
      this.sqsMessages.push(input);
      return { MessageId: randomUUID() };
    });
    this.sfn.on(SendTaskSuccessCommand).callsFake((input: Record<string, unknown>) => {
      this.taskAnswers.push({ kind: 'success', input });
      return {};
    });
    this.sfn.on(SendTaskFailureCommand).callsFake((input: Record<string, unknown>) => {
      this.taskAnswers.push({ kind: 'failure', input });
      return {};
    });
  }

  private role(name: string): FakeRole {
    const role = this.roles.get(name);
    if (!role)
      throw new NoSuchEntityException({ message: `The role with name ${name} cannot be found.`, $metadata: { httpStatusCode: 404 } });
    return role;
  }

  private secret(id: string): FakeSecret {
    const secret = this.secrets.get(id) ?? [...this.secrets.values()].find((s) => s.arn === id);
    if (!secret)
      throw new ResourceNotFoundException({
        message: "Secrets Manager can't find the specified secret.",
        $metadata: { httpStatusCode: 400 },
      });
    return secret;
  }

  private assumeRole(input: Record<string, unknown>) {
    const failure = this.assumeRoleFailures.shift();
    if (failure) throw failure;
    const arn = String(input.RoleArn);
    const role = [...this.roles.values()].find((r) => r.arn === arn);
    if (!role) throw awsError('AccessDenied', `User is not authorized to perform: sts:AssumeRole on resource: ${arn}`, 403);
    const duration = Number(input.DurationSeconds ?? 3600);
    if (duration < 900 || duration > role.maxSessionDuration)
      throw awsError('ValidationError', 'The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
    const issuedAt = this.now();
    const session: FakeSession = {
      accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: `IQoJb3JpZ2luX2Vj${randomBytes(96).toString('base64')}`,
      roleName: role.name,
      sessionName: String(input.RoleSessionName),
      issuedAt,
      // STS expirations have whole seconds.
      expiresAt: Math.floor((issuedAt + duration * 1000) / 1000) * 1000,
      policy: input.Policy as string | undefined,
    };
    this.sessions.set(session.accessKeyId, session);
    return {
      Credentials: {
        AccessKeyId: session.accessKeyId,
        SecretAccessKey: session.secretAccessKey,
        SessionToken: session.sessionToken,
        Expiration: new Date(session.expiresAt),
      },
      AssumedRoleUser: {
        AssumedRoleId: `${role.roleId}:${session.sessionName}`,
        Arn: `arn:aws:sts::${ACCOUNT}:assumed-role/${role.name}/${session.sessionName}`,
      },
      SourceIdentity: input.SourceIdentity as string | undefined,
    };
  }

  /** GetRole, authorised the way IAM would for a session caller. */
  private getRole(name: string, caller: FakeSession | undefined) {
    if (caller) {
      const failure = this.probeFailures.shift();
      if (failure) throw failure;
      if (caller.expiresAt <= this.now()) throw awsError('ExpiredToken', 'The security token included in the request is expired', 403);
      const denied = () => awsError('AccessDenied', `User: ${caller.sessionName} is not authorized to perform: iam:GetRole`, 403);
      const role = this.roles.get(caller.roleName);
      if (!role) throw denied();
      if (this.deniedByRevocations(role, caller)) throw denied();
      if (!role.allowsProbe || !this.sessionPolicyAllows(caller.policy, 'iam:GetRole', role.arn)) throw denied();
    }
    const role = this.role(name);
    return {
      Role: {
        RoleName: role.name,
        Arn: role.arn,
        RoleId: role.roleId,
        Path: '/',
        CreateDate: new Date(0),
        MaxSessionDuration: role.maxSessionDuration,
        Tags: Object.entries(role.tags).map(([Key, Value]) => ({ Key, Value })),
      },
    };
  }

  private deniedByRevocations(role: FakeRole, caller: FakeSession): boolean {
    const key = `${role.name}/tasklease-revocations`;
    const change = this.changes.get(key);
    const text = change && change.effectiveAt > this.now() ? change.before : role.inlinePolicies.get('tasklease-revocations');
    if (!text) return false;
    const doc = JSON.parse(text) as { Statement: Array<{ Effect: string; Condition?: Record<string, Record<string, string | string[]>> }> };
    const userId = `${role.roleId}:${caller.sessionName}`;
    // StringLike globs (`*`, `?`); the conditions a statement has must all hold (IAM ANDs them). A
    // statement with neither condition is not evaluated here, as before.
    const like = (pattern: string) => {
      const body = pattern
        .replace(/[.+^$(){}|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.');
      return new RegExp(`^${body}$`);
    };
    return doc.Statement.some((s) => {
      if (s.Effect !== 'Deny') return false;
      const ids = s.Condition?.StringLike?.['aws:userid'];
      const before = s.Condition?.DateLessThan?.['aws:TokenIssueTime'];
      if (ids === undefined && before === undefined) return false;
      const idMatches = ids === undefined || (Array.isArray(ids) ? ids : [ids]).some((p) => p === userId || like(p).test(userId));
      const issuedBefore = before === undefined || (typeof before === 'string' && caller.issuedAt < Date.parse(before));
      return idMatches && issuedBefore;
    });
  }

  private sessionPolicyAllows(policy: string | undefined, action: string, resource: string): boolean {
    if (!policy) return true;
    const doc = JSON.parse(policy) as { Statement: Array<{ Effect: string; Action?: string | string[]; Resource?: string | string[] }> };
    const list = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
    return doc.Statement.some(
      (s) => s.Effect === 'Allow' && list(s.Action).includes(action) && list(s.Resource).some((r) => r === '*' || r === resource),
    );
  }
}
