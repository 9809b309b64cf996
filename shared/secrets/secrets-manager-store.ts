import { awsTagValue, credentialTags } from '../aws/tags.ts';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutResourcePolicyCommand,
  PutSecretValueCommand,
} from '@aws-sdk/client-secrets-manager';
import type { SecretsManagerClient, Tag } from '@aws-sdk/client-secrets-manager';
import { grantKey } from '../events/schemas.ts';
import { TargetError } from '../lease/errors.ts';
import type { SecretMaterial, SecretPutInput, SecretStore } from '../lease/ports.ts';
import { describeAwsError, isAwsError } from '../aws/errors.ts';

/*
 * Credentials delivered through AWS Secrets Manager (docs/architecture.md, "Ports"): one secret per credential,
 * named `tasklease/<taskId>/<grant>` by the core, encrypted with the broker's customer-managed
 * KMS key, tagged with task/workload/grant, and readable only by the workload's AWS principal
 * (the rule's `awsPrincipal`) and the broker itself. Deleted without a recovery window at revoke.
 */

export interface SecretsManagerStoreOptions {
  /** Customer-managed KMS key (id, ARN or alias) the secrets are encrypted with. */
  kmsKeyId: string;
  /**
   * The broker's own principal ARN(s), exempt from the resource policy's deny (it reads the old
   * secret to verify revocation). A function, so the runtime can resolve it lazily (STS).
   */
  brokerPrincipals: () => Promise<string[]>;
  /**
   * Refuse to deliver a secret when the policy rule names no `awsPrincipal`: nobody but the
   * broker could read it. Default true.
   */
  requireReaderPrincipal?: boolean;
}

/** IAM role ARN patterns that match whatever the principal ARN (`aws:PrincipalArn`) of a caller is. */
export function principalArnPatterns(arn: string): string[] {
  // An assumed-role session's aws:PrincipalArn is its role's ARN; role names are unique per
  // account whatever their path, so `role/NAME` and `role/*/NAME` cover every path.
  const session = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([\w+=,.@-]+)\/[\w+=,.@-]+$/.exec(arn);
  if (session) {
    const [, partition, account, role] = session;
    return [`arn:${partition}:iam::${account}:role/${role}`, `arn:${partition}:iam::${account}:role/*/${role}`];
  }
  return [arn];
}

/** The secret's resource policy: the workload may read; nobody else but the broker may. */
export function secretResourcePolicy(readerPrincipal: string, brokerPrincipals: readonly string[]): string {
  const brokers = [...new Set(brokerPrincipals.flatMap(principalArnPatterns))];
  const exempt = [...new Set([...principalArnPatterns(readerPrincipal), ...brokers])];
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'TaskleaseWorkloadReads',
        Effect: 'Allow',
        Principal: { AWS: readerPrincipal },
        Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
        Resource: '*',
      },
      {
        // A Deny wins over any identity policy in the account that allows secretsmanager:*.
        Sid: 'TaskleaseNobodyElseReads',
        Effect: 'Deny',
        Principal: '*',
        Action: 'secretsmanager:GetSecretValue',
        Resource: '*',
        Condition: { ArnNotLike: { 'aws:PrincipalArn': exempt } },
      },
      {
        // Nobody but the broker may loosen this policy or change the value, whatever their identity policy says.
        Sid: 'TaskleaseOnlyBrokerChanges',
        Effect: 'Deny',
        Principal: '*',
        Action: [
          'secretsmanager:PutResourcePolicy',
          'secretsmanager:DeleteResourcePolicy',
          'secretsmanager:PutSecretValue',
          'secretsmanager:UpdateSecret',
        ],
        Resource: '*',
        Condition: { ArnNotLike: { 'aws:PrincipalArn': brokers } },
      },
    ],
  });
}

export class SecretsManagerStore implements SecretStore {
  private readonly requireReader: boolean;

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly options: SecretsManagerStoreOptions,
  ) {
    this.requireReader = options.requireReaderPrincipal ?? true;
  }

  async put(input: SecretPutInput): Promise<{ name: string; arn?: string }> {
    if (!input.readerPrincipal && this.requireReader) {
      throw new TargetError(
        `no AWS principal may read secret ${input.name}: the policy rule for ${input.workload} has no awsPrincipal; set it to the workload's role ARN`,
        { retryable: false },
      );
    }
    const secretString = JSON.stringify(input.value);
    const tags: Tag[] = credentialTags(input.taskId, input.workload, input.grant);
    // Created empty, restricted, then filled: the value never exists without its resource policy.
    let arn: string | undefined;
    try {
      const out = await this.client.send(
        new CreateSecretCommand({
          Name: input.name,
          KmsKeyId: this.options.kmsKeyId,
          Tags: tags,
          Description: `tasklease credential for task ${awsTagValue(input.taskId)}, grant ${grantKey(input.grant)}; deleted when the task ends`,
        }),
      );
      arn = out.ARN;
    } catch (err) {
      // A redelivered issue after a crash finds its own secret: restrict it again and overwrite it.
      if (!isAwsError(err, 'ResourceExistsException')) throw this.wrap('create', input.name, err);
    }
    if (input.readerPrincipal) {
      const policy = secretResourcePolicy(input.readerPrincipal, await this.options.brokerPrincipals());
      try {
        await this.client.send(
          new PutResourcePolicyCommand({ SecretId: arn ?? input.name, ResourcePolicy: policy, BlockPublicPolicy: true }),
        );
      } catch (err) {
        throw this.wrap('restrict', input.name, err);
      }
    }
    try {
      const out = await this.client.send(new PutSecretValueCommand({ SecretId: arn ?? input.name, SecretString: secretString }));
      arn ??= out.ARN;
    } catch (err) {
      throw this.wrap('write', input.name, err);
    }
    return { name: input.name, ...(arn ? { arn } : {}) };
  }

  async get(name: string): Promise<SecretMaterial | undefined> {
    let secretString: string | undefined;
    try {
      secretString = (await this.client.send(new GetSecretValueCommand({ SecretId: name }))).SecretString;
    } catch (err) {
      // Gone, or deleted and awaiting purge.
      if (
        isAwsError(err, 'ResourceNotFoundException') ||
        (isAwsError(err, 'InvalidRequestException') && /deleted|deletion/i.test(String((err as Error).message)))
      ) {
        return undefined;
      }
      throw this.wrap('read', name, err);
    }
    if (secretString === undefined) return undefined;
    try {
      const parsed = JSON.parse(secretString) as unknown;
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
      return Object.fromEntries(
        Object.entries(parsed as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'),
      );
    } catch {
      return undefined;
    }
  }

  async delete(name: string): Promise<void> {
    try {
      await this.client.send(new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true }));
    } catch (err) {
      if (isAwsError(err, 'ResourceNotFoundException')) return;
      throw this.wrap('delete', name, err);
    }
  }

  async exists(name: string): Promise<boolean> {
    try {
      const out = await this.client.send(new DescribeSecretCommand({ SecretId: name }));
      return out.DeletedDate === undefined;
    } catch (err) {
      if (isAwsError(err, 'ResourceNotFoundException')) return false;
      throw this.wrap('describe', name, err);
    }
  }

  /** SDK errors never echo SecretString, but the message is still bounded and named. */
  private wrap(op: string, name: string, err: unknown): TargetError {
    const permanent = isAwsError(
      err,
      'AccessDeniedException',
      'MalformedPolicyDocumentException',
      'ValidationException',
      'EncryptionFailure',
    );
    return new TargetError(`secrets manager ${op} ${name} failed: ${describeAwsError(err)}`, { retryable: !permanent });
  }
}
