import { Aws } from 'aws-cdk-lib';
import type { CfnResource } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPES } from '../../shared/events/schemas.ts';
import { GSIS } from '../../shared/ledger/table.ts';
import type { TaskLease } from '../../infra/task-lease.ts';
import type { TaskLeaseStack } from '../../infra/stack.ts';
import { identityStatements, loadFixtureConfig, synth } from './helpers.ts';
import type { Statement, Synthesized } from './helpers.ts';

// The grant methods a user's own stack calls, and the stack outputs a user wires; one template-only
// synth of the fixture stack with an engine, a report reader and a workload role beside it.

let s: Synthesized;
let stack: TaskLeaseStack;
let tl: TaskLease;
const roles: Record<'engine' | 'reader' | 'workload' | 'operator', iam.Role> = {} as never;
const PARTNER_ACCOUNT = '444455556666';

const r = (v: unknown): unknown => stack.resolve(v);
const id = (c: { node: { defaultChild?: unknown } }): string => stack.getLogicalId(c.node.defaultChild as CfnResource);
const statementsOf = (role: iam.Role): Statement[] =>
  identityStatements(s.template)
    .filter((x) => x.roles.includes(id(role)))
    .map((x) => x.statement);

beforeAll(async () => {
  s = synth({
    config: await loadFixtureConfig(),
    bundle: false,
    extend: (st) => {
      const lambdaRole = (name: string) => new iam.Role(st, name, { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
      roles.engine = lambdaRole('Engine');
      roles.reader = lambdaRole('Reader');
      roles.workload = lambdaRole('Workload');
      st.taskLease.grantPutTaskEvents(roles.engine);
      st.taskLease.grantPutTaskEvents(new iam.AccountPrincipal(PARTNER_ACCOUNT));
      st.taskLease.grantReadLedger(roles.reader);
      st.taskLease.grantReadDeliveredSecrets(roles.workload);
      roles.operator = new iam.Role(st, 'Oncall', { assumedBy: new iam.AccountRootPrincipal() });
      st.taskLease.grantOperate(roles.operator);
    },
  });
  stack = s.stack;
  tl = stack.taskLease;
}, 120_000);
afterAll(() => s?.cleanup());

const TASK_EVENTS = { 'ForAllValues:StringEquals': { 'events:detail-type': [DETAIL_TYPES.taskStarted, DETAIL_TYPES.taskEnded] } };

describe('grantPutTaskEvents', () => {
  it('lets an engine role put only Task Started / Task Ended, only on the tasklease bus', () => {
    expect(statementsOf(roles.engine)).toEqual([
      { Effect: 'Allow', Action: 'events:PutEvents', Resource: r(tl.bus.eventBusArn), Condition: TASK_EVENTS },
    ]);
  });

  it('puts a principal without an identity policy here (another account) into the bus policy, with the same condition', () => {
    const policies = Object.values(s.template.findResources('AWS::Events::EventBusPolicy'));
    // The construct's own producers statement and the broker's four (bus-policy.test.ts), and the partner's.
    expect(policies).toHaveLength(6);
    s.template.hasResourceProperties('AWS::Events::EventBusPolicy', {
      EventBusName: r(tl.bus.eventBusName),
      Statement: {
        Sid: Match.stringLikeRegexp('TaskEventProducer1$'),
        Effect: 'Allow',
        Action: 'events:PutEvents',
        Principal: { AWS: r(`arn:${Aws.PARTITION}:iam::${PARTNER_ACCOUNT}:root`) },
        Resource: r(tl.bus.eventBusArn),
        Condition: TASK_EVENTS,
      },
    });
  });
});

describe('grantReadLedger', () => {
  it('gets, queries and scans the table, queries and scans its indexes, and decrypts with the key: nothing that writes', () => {
    const tableArn = tl.table.tableArn;
    expect(statementsOf(roles.reader)).toEqual([
      { Effect: 'Allow', Action: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:Scan'], Resource: r(tableArn) },
      { Effect: 'Allow', Action: ['dynamodb:Query', 'dynamodb:Scan'], Resource: GSIS.map((g) => r(`${tableArn}/index/${g.indexName}`)) },
      // Decrypt only through DynamoDB: the ledger's items, not any data under the key.
      {
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: r(tl.key.keyArn),
        Condition: { StringEquals: { 'kms:ViaService': r(`dynamodb.${Aws.REGION}.amazonaws.com`) } },
      },
    ]);
    expect(JSON.stringify(s.template.findResources('AWS::KMS::Key'))).not.toContain(id(roles.reader));
  });
});

describe('grantReadDeliveredSecrets', () => {
  it('reads secrets under tasklease/ and decrypts them only through Secrets Manager, as a rule awsPrincipal does', () => {
    const taskSecrets = `arn:${Aws.PARTITION}:secretsmanager:${Aws.REGION}:${Aws.ACCOUNT_ID}:secret:tasklease/*`;
    expect(statementsOf(roles.workload)).toEqual([
      { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: r(taskSecrets) },
      {
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: r(tl.key.keyArn),
        // The same conditions as the key policy's statement for the rules' awsPrincipal.
        Condition: {
          StringEquals: { 'kms:ViaService': r(`secretsmanager.${Aws.REGION}.amazonaws.com`) },
          StringLike: { 'kms:EncryptionContext:SecretARN': r(taskSecrets) },
        },
      },
    ]);
  });

  it('acknowledges the tasklease/ wildcard on the grantee, so cdk-nag still passes the whole app', () => {
    const acks = (s.template.toJSON().Resources as Record<string, { Metadata?: { cdk_nag?: { rules_to_suppress: { id: string }[] } } }>)[
      stack.getLogicalId(roles.workload.node.findChild('DefaultPolicy').node.defaultChild as CfnResource)
    ]?.Metadata?.cdk_nag?.rules_to_suppress.map((a) => a.id);
    expect(acks).toContain(
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:tasklease/*]',
    );
    expect(s.report.pluginReports.every((p) => p.conclusion === 'success')).toBe(true);
  });
});

describe('grantOperate', () => {
  it('gives exactly lambda:InvokeFunction on the operator function (and its versions), nothing else', () => {
    const operatorArn = tl.functions.operator.functionArn;
    expect(statementsOf(roles.operator)).toEqual([
      { Effect: 'Allow', Action: 'lambda:InvokeFunction', Resource: [r(operatorArn), r(`${operatorArn}:*`)] },
    ]);
    // A role with an identity policy here needs no Lambda permission.
    expect(s.template.findResources('AWS::Lambda::Permission')).toEqual({});
  });

  it('acknowledges the version wildcard on the grantee, so cdk-nag still passes the whole app', () => {
    const acks = (s.template.toJSON().Resources as Record<string, { Metadata?: { cdk_nag?: { rules_to_suppress: { id: string }[] } } }>)[
      stack.getLogicalId(roles.operator.node.findChild('DefaultPolicy').node.defaultChild as CfnResource)
    ]?.Metadata?.cdk_nag?.rules_to_suppress.map((a) => a.id);
    expect(acks).toEqual([`AwsSolutions-IAM5[Resource::<${id(tl.functions.operator)}.Arn>:*]`]);
    expect(s.report.pluginReports.every((p) => p.conclusion === 'success')).toBe(true);
  });
});

describe('stack outputs', () => {
  it('name the bus, the issuer role a target role must trust, the ledger table, the operator function and the key, without exports', () => {
    const outputs = s.template.toJSON().Outputs as Record<string, { Value: unknown; Description?: string; Export?: unknown }>;
    expect(Object.keys(outputs).sort()).toEqual([
      'BusArn',
      'BusName',
      'KeyArn',
      'LedgerTableName',
      'OperatorFunctionName',
      'TaskStartedRoleArn',
    ]);
    // The bus has no fixed name: the output is the only place to read it from.
    expect(outputs.OperatorFunctionName!.Value).toEqual(r(tl.functions.operator.functionName));
    expect(outputs.BusName!.Value).toEqual(r(tl.bus.eventBusName));
    expect(outputs.BusArn!.Value).toEqual(r(tl.bus.eventBusArn));
    expect(outputs.TaskStartedRoleArn!.Value).toEqual(r(tl.roles.taskStarted.roleArn));
    expect(outputs.LedgerTableName!.Value).toEqual(r(tl.table.tableName));
    expect(outputs.KeyArn!.Value).toEqual(r(tl.key.keyArn));
    for (const [name, o] of Object.entries(outputs)) {
      expect(o.Export, name).toBeUndefined();
      expect(o.Description?.length, name).toBeGreaterThan(20);
    }
  });
});
