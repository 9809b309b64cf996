import { Aws, Validations } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { IConstruct } from 'constructs';
import { EVENT_SOURCE } from '../shared/events/schemas.ts';
import { KEY_PREFIX } from '../shared/ledger/table.ts';
import type { FUNCTION_ENTRIES } from '../shared/runtime/env.ts';
import type { IamStatementSpec } from '../shared/targets/kind.ts';
import { INPUT_DETAIL_TYPES, OUTPUT_DETAIL_TYPES } from './bus.ts';
import { ledgerArns } from './ledger.ts';
import { pascal } from './names.ts';

/** The Lambda functions of the construct, keyed like `FUNCTION_ENTRIES`. */
export type TaskLeaseFunctionName = keyof typeof FUNCTION_ENTRIES;

/** Secrets tasklease creates for delivered credentials live under this name prefix. */
export const SECRET_NAME_PREFIX = 'tasklease/';

/** Every delivered secret of this account and region. */
export function deliveredSecretsArn(): string {
  return `arn:${Aws.PARTITION}:secretsmanager:${Aws.REGION}:${Aws.ACCOUNT_ID}:secret:${SECRET_NAME_PREFIX}*`;
}
/** The AWS services that use the tasklease key on a caller's behalf. */
export type KeyService = 'sqs' | 'dynamodb' | 'secretsmanager' | 'events';

/** `kms:ViaService` for these services in this region: the key only through them, never directly. */
export function viaServices(services: readonly KeyService[]): Record<string, Record<string, string | string[]>> {
  const names = services.map((svc) => `${svc}.${Aws.REGION}.amazonaws.com`);
  return { StringEquals: { 'kms:ViaService': names.length === 1 ? names[0]! : names } };
}

/** kms:Decrypt of delivered secrets only: through Secrets Manager, for a secret under the tasklease/ prefix. */
export function viaSecretsManager(): Record<string, Record<string, string | string[]>> {
  return { ...viaServices(['secretsmanager']), StringLike: { 'kms:EncryptionContext:SecretARN': deliveredSecretsArn() } };
}

/**
 * Use of the tasklease key by a user's principal, through the given services only: on the principal
 * when its account can carry the statement, else in the key policy.
 */
export function grantKeyUse(
  key: kms.IKey,
  grantee: iam.IGrantable,
  actions: string[],
  conditions: Record<string, Record<string, string | string[]>>,
): iam.Grant {
  return iam.Grant.addToPrincipalOrResource({
    grantee,
    actions,
    resourceArns: [key.keyArn],
    resourceSelfArns: ['*'],
    resource: key,
    conditions,
  });
}

/**
 * The functions' use of the key, through the services that hold data under it: SQS (send:
 * GenerateDataKey; the event source's receive: Decrypt), the DynamoDB ledger, delivered secrets
 * (create: GenerateDataKey; read at verify: Decrypt) and the bus. Nothing encrypts with the key
 * directly, so there is no kms:Encrypt.
 */
export function functionKeyStatement(key: kms.IKey): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'UseTaskLeaseKey',
    actions: ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:DescribeKey'],
    resources: [key.keyArn],
    conditions: viaServices(['sqs', 'dynamodb', 'secretsmanager', 'events']),
  });
}

const DELIVERED_SECRETS_NAG = `arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${SECRET_NAME_PREFIX}*`;
const DELIVERED_SECRETS_REASON =
  'Delivered secrets are created per task at run time (tasklease/<taskId>/<grant>), so their names are unknown at deploy time; the statement is limited to the tasklease/ prefix in this account and region, creation requires the tasklease KMS key and resource policies must block public access.';

/** Everything a function may be allowed to do; each function gets a subset. */
export type Capability = 'issue' | 'revoke' | 'answerTaskTokens' | 'verifySvids';

export const FUNCTION_CAPABILITIES: Record<TaskLeaseFunctionName, readonly Capability[]> = {
  // Issues credentials, and revokes them again when issuing fails halfway.
  taskStarted: ['issue', 'revoke', 'answerTaskTokens', 'verifySvids'],
  // Revokes, after verifying the end's SVID (Task Ended is authenticated).
  taskEnded: ['revoke', 'verifySvids'],
  reverify: ['revoke'],
  // Ends expired leases and rolls back interrupted issuing (which answers the task token with a failure).
  reaper: ['revoke', 'answerTaskTokens'],
  // Revokes and proves at once; its lock and unlock are ledger items like the rest.
  operator: ['revoke'],
};

/** The tasklease resources a function's policy names. */
export interface FunctionPolicyResources {
  readonly key: kms.IKey;
  readonly table: dynamodb.ITable;
  readonly bus: events.IEventBus;
  readonly reverifyQueue: sqs.IQueue;
  /** SSM parameter names of trust bundles (the issuer reads them). */
  readonly ssmBundleParameters: readonly string[];
  /** What the configured targets need, merged (infra/target-needs.ts). */
  readonly targetStatements: readonly IamStatementSpec[];
}

function ssmParameterArn(name: string): string {
  return `arn:${Aws.PARTITION}:ssm:${Aws.REGION}:${Aws.ACCOUNT_ID}:parameter/${name.replace(/^\//, '')}`;
}

function fromSpec(spec: IamStatementSpec): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: spec.sid,
    actions: spec.actions,
    resources: spec.resources,
    ...(spec.conditions ? { conditions: spec.conditions } : {}),
  });
}

/**
 * One policy per function, every statement scoped to tasklease's own resources or the configured
 * targets. Per job, the targets' statements come before tasklease's own.
 */
export function attachFunctionPolicy(
  scope: Construct,
  name: TaskLeaseFunctionName,
  role: iam.IRole,
  res: FunctionPolicyResources,
): iam.Policy {
  const caps = new Set(FUNCTION_CAPABILITIES[name]);
  const targets = (job: IamStatementSpec['job']) => res.targetStatements.filter((s) => s.job === job);
  const ledger = ledgerArns(res.table);
  const taskSecrets = deliveredSecretsArn();
  const statements: iam.PolicyStatement[] = [
    new iam.PolicyStatement({
      sid: 'LedgerItems',
      // Exactly what shared/ledger uses; the ledger never deletes (TTL does).
      actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Query'],
      resources: [ledger.table],
    }),
    new iam.PolicyStatement({ sid: 'LedgerIndexes', actions: ['dynamodb:Query'], resources: ledger.indexes }),
    // The shared lock (shared/ledger/lock.ts) releases by deleting its item: lock items only.
    new iam.PolicyStatement({
      sid: 'LedgerLockRelease',
      actions: ['dynamodb:DeleteItem'],
      resources: [ledger.table],
      conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [`${KEY_PREFIX.lock}*`] } },
    }),
    new iam.PolicyStatement({
      sid: 'PublishOutputEvents',
      actions: ['events:PutEvents'],
      resources: [res.bus.eventBusArn],
      // The broker publishes its output events only, under its own source (the bus policy agrees).
      // Multivalued keys (infra/bus.ts): every entry's source and detail-type must be the broker's.
      conditions: { 'ForAllValues:StringEquals': { 'events:source': [EVENT_SOURCE], 'events:detail-type': OUTPUT_DETAIL_TYPES } },
    }),
    new iam.PolicyStatement({ sid: 'QueueReverify', actions: ['sqs:SendMessage'], resources: [res.reverifyQueue.queueArn] }),
    functionKeyStatement(res.key),
  ];
  const fromTargets: IamStatementSpec[] = [];
  const add = (specs: IamStatementSpec[]) => {
    fromTargets.push(...specs);
    statements.push(...specs.map(fromSpec));
  };

  if (caps.has('issue')) {
    add(targets('issue'));
    statements.push(
      new iam.PolicyStatement({
        sid: 'CreateTaskSecrets',
        actions: ['secretsmanager:CreateSecret'],
        resources: [taskSecrets],
        // Delivered secrets must be encrypted with the tasklease key.
        conditions: { StringEquals: { 'secretsmanager:KmsKeyArn': res.key.keyArn } },
      }),
      new iam.PolicyStatement({
        sid: 'RestrictTaskSecretReaders',
        actions: ['secretsmanager:PutResourcePolicy'],
        resources: [taskSecrets],
        conditions: { Bool: { 'secretsmanager:BlockPublicPolicy': 'true' } },
      }),
      new iam.PolicyStatement({
        sid: 'WriteTaskSecrets',
        actions: ['secretsmanager:PutSecretValue', 'secretsmanager:TagResource'],
        resources: [taskSecrets],
      }),
    );
  }
  if (caps.has('verifySvids') && res.ssmBundleParameters.length > 0) {
    statements.push(
      new iam.PolicyStatement({
        sid: 'ReadTrustBundles',
        actions: ['ssm:GetParameter'],
        resources: res.ssmBundleParameters.map(ssmParameterArn),
      }),
    );
  }
  if (caps.has('revoke')) {
    add(targets('revoke'));
    statements.push(
      new iam.PolicyStatement({
        sid: 'RetireTaskSecrets',
        // GetSecretValue: verification proves rejection with the old credential while it exists.
        actions: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:DeleteSecret'],
        resources: [taskSecrets],
      }),
    );
  }
  add(targets('any'));
  if (caps.has('answerTaskTokens')) {
    statements.push(
      new iam.PolicyStatement({
        sid: 'AnswerStepFunctionsTaskTokens',
        // Task tokens are not resources: these actions support no resource-level permissions.
        actions: ['states:SendTaskSuccess', 'states:SendTaskFailure'],
        resources: ['*'],
      }),
    );
  }
  // IAM refuses a policy whose statements share a Sid; say which one instead of failing the deploy.
  const sids = statements.map((s) => s.sid);
  const duplicate = sids.find((sid, i) => sid !== undefined && sids.indexOf(sid) !== i);
  if (duplicate)
    throw new Error(
      `the ${name} function's policy would hold two statements with Sid ${duplicate}: a target kind's statement sids must be unique and differ from tasklease's own`,
    );

  const policy = new iam.Policy(scope, `${pascal(name)}Policy`, { statements });
  policy.attachToRole(role);
  const wildcardFindings: Record<string, string> = { [DELIVERED_SECRETS_NAG]: DELIVERED_SECRETS_REASON };
  if (caps.has('answerTaskTokens')) {
    wildcardFindings['*'] =
      'states:SendTaskSuccess and states:SendTaskFailure act on a task token, not on a resource, and support no resource-level permissions.';
  }
  for (const spec of fromTargets) Object.assign(wildcardFindings, spec.wildcardReasons);
  for (const [finding, reason] of Object.entries(wildcardFindings))
    Validations.of(policy).acknowledge({ id: `AwsSolutions-IAM5[Resource::${finding}]`, reason });
  return policy;
}

// ── Grants for a user's own principals ──────────────────────────────────────────────────────

// Bus policy statements need a Sid unique on their bus.
const producerGrants = new WeakMap<events.IEventBus, number>();

/** events:PutEvents on the bus, only for the input detail-types (`Task Started`, `Task Ended`). */
export function grantPutTaskEvents(bus: events.EventBus, grantee: iam.IGrantable): iam.Grant {
  const options = {
    grantee,
    actions: ['events:PutEvents'],
    resourceArns: [bus.eventBusArn],
    // The same input detail-types as the bus policy's producers statement.
    conditions: { 'ForAllValues:StringEquals': { 'events:detail-type': INPUT_DETAIL_TYPES } },
  };
  const onPrincipal = iam.Grant.addToPrincipal(options);
  if (onPrincipal.success) return onPrincipal;
  // A principal of another account (or without an identity policy here): the bus policy, which needs a Sid.
  const n = (producerGrants.get(bus) ?? 0) + 1;
  producerGrants.set(bus, n);
  const statement = new iam.PolicyStatement({
    sid: `TaskEventProducer${n}`,
    principals: [grantee.grantPrincipal],
    actions: options.actions,
    resources: options.resourceArns,
    conditions: options.conditions,
  });
  return iam.Grant.addStatementToResourcePolicy({ ...options, statement, resource: bus });
}

/** The reads `tasklease report` and the dashboard make: items and queries of the table and its indexes, and the key to decrypt them. */
export function grantReadLedger(table: dynamodb.ITable, key: kms.IKey, grantee: iam.IGrantable): iam.Grant {
  const ledger = ledgerArns(table);
  return iam.Grant.addToPrincipal({
    grantee,
    actions: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:Scan'],
    resourceArns: [ledger.table],
  })
    .combine(iam.Grant.addToPrincipal({ grantee, actions: ['dynamodb:Query', 'dynamodb:Scan'], resourceArns: ledger.indexes }))
    .combine(grantKeyUse(key, grantee, ['kms:Decrypt'], viaServices(['dynamodb'])));
}

/**
 * A workload's read of its delivered secrets, as the rules' `awsPrincipal` reads them: GetSecretValue
 * under tasklease/, and kms:Decrypt of the key only through Secrets Manager for those secrets.
 * Each secret's resource policy still admits only the awsPrincipal of the rule that issued it.
 */
export function grantReadDeliveredSecrets(key: kms.IKey, grantee: iam.IGrantable): iam.Grant {
  const grant = iam.Grant.addToPrincipal({
    grantee,
    actions: ['secretsmanager:GetSecretValue'],
    resourceArns: [deliveredSecretsArn()],
  }).combine(grantKeyUse(key, grantee, ['kms:Decrypt'], viaSecretsManager()));
  // The grantee's policy now names the tasklease/ prefix; say why where cdk-nag will look.
  const principal = grantee.grantPrincipal as Partial<IConstruct>;
  if (principal instanceof Construct) {
    Validations.of(principal).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${DELIVERED_SECRETS_NAG}]`,
      reason:
        'Delivered secrets are named per task at run time (tasklease/<taskId>/<grant>); each one’s resource policy admits only the workload its rule names.',
    });
  }
  return grant;
}
