import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Aws } from 'aws-cdk-lib';
import type { Stack } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Template } from 'aws-cdk-lib/assertions';
import type { CfnResource } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DETAIL_TYPES } from '../../shared/events/schemas.ts';
import { GSIS } from '../../shared/ledger/table.ts';
import { METRIC, METRICS_NAMESPACE } from '../../shared/metrics/names.ts';
import type { TaskLeaseConfig } from '../../shared/policy/config.ts';
import { ENV } from '../../shared/runtime/env.ts';
import { ESM_REQUIRE_BANNER } from '../../infra/task-lease.ts';
import type { TaskLease, TaskLeaseFunctionName } from '../../infra/task-lease.ts';
import { dashboardBody, identityStatements, list, loadFixtureConfig, synth } from './helpers.ts';
import type { Statement, Synthesized } from './helpers.ts';

// One bundled synth of the fixture stack (every target kind, VPC, SSM bundle), shared by every test.
let s: Synthesized;
let t: Template;
let stack: Stack;
let tl: TaskLease;
let config: TaskLeaseConfig;

const id = (c: { node: { defaultChild?: unknown } }): string => stack.getLogicalId(c.node.defaultChild as CfnResource);
const r = (v: unknown): unknown => stack.resolve(v);
const FUNCTIONS: TaskLeaseFunctionName[] = ['taskStarted', 'taskEnded', 'reverify', 'reaper', 'operator'];
// Every function but the issuer: they revoke, none issues.
const REVOKERS = ['taskEnded', 'reverify', 'reaper', 'operator'] as const;
const ROLE_ARN = 'arn:aws:iam::123456789012:role/tasklease-exports';
/** An operator given in the `operators` prop (a principal without an identity policy here: a Lambda permission). */
const ONCALL_ARN = 'arn:aws:iam::123456789012:role/oncall';

beforeAll(async () => {
  config = await loadFixtureConfig();
  s = synth({ config, stackId: 'TaskLeaseTest', stackProps: { taskLease: { operators: [new iam.ArnPrincipal(ONCALL_ARN)] } } });
  t = s.template;
  stack = s.stack;
  tl = s.stack.taskLease;
}, 120_000);
afterAll(() => s?.cleanup());

/** Identity statements attached to one function's role. */
function statementsOf(fn: TaskLeaseFunctionName): Statement[] {
  const roleId = id(tl.roles[fn]);
  return identityStatements(t)
    .filter((x) => x.roles.includes(roleId))
    .map((x) => x.statement);
}
const bySid = (fn: TaskLeaseFunctionName, sid: string) => statementsOf(fn).find((st) => st.Sid === sid);
const actionsOf = (fn: TaskLeaseFunctionName) => statementsOf(fn).flatMap((st) => list(st.Action));

describe('KMS key', () => {
  it('is customer managed with rotation on, and encrypts every queue, the table and the bus', () => {
    t.resourceCountIs('AWS::KMS::Key', 1);
    t.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    const keyArn = r(tl.key.keyArn);
    const queues = t.findResources('AWS::SQS::Queue');
    // Three work queues and five dead-letter queues (one per work queue, delivery, reaper failures).
    expect(Object.keys(queues)).toHaveLength(8);
    for (const q of Object.values(queues)) expect(q.Properties.KmsMasterKeyId).toEqual(keyArn);
    t.hasResourceProperties('AWS::DynamoDB::Table', { SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: keyArn } });
    t.hasResourceProperties('AWS::Events::EventBus', { KmsKeyIdentifier: keyArn });
  });

  it('lets workloads decrypt only their delivered secrets, only through Secrets Manager', () => {
    t.hasResourceProperties('AWS::KMS::Key', {
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Sid: 'WorkloadsDecryptDeliveredSecrets',
            // Every rule's awsPrincipal (each rule must name one).
            Principal: { AWS: ['arn:aws:iam::123456789012:role/etl-workers', 'arn:aws:iam::123456789012:role/partner-sync'] },
            Action: 'kms:Decrypt',
            Condition: {
              StringEquals: { 'kms:ViaService': r(`secretsmanager.${Aws.REGION}.amazonaws.com`) },
              StringLike: {
                'kms:EncryptionContext:SecretARN': r(
                  `arn:${Aws.PARTITION}:secretsmanager:${Aws.REGION}:${Aws.ACCOUNT_ID}:secret:tasklease/*`,
                ),
              },
            },
          }),
        ]),
      },
    });
  });

  it('grants EventBridge the key only for this account', () => {
    const key = Object.values(t.findResources('AWS::KMS::Key'))[0]!;
    const forEvents = (key.Properties.KeyPolicy.Statement as Statement[]).filter((st) =>
      JSON.stringify(st.Principal).includes('events.amazonaws.com'),
    );
    expect(forEvents.length).toBeGreaterThan(0);
    for (const st of forEvents) expect(JSON.stringify(st.Condition)).toContain('aws:SourceAccount');
  });
});

describe('bus, rules and queues', () => {
  it('is a custom bus whose resource policy lets only this account put events, and only the input detail-types', () => {
    t.resourceCountIs('AWS::Events::EventBus', 1);
    t.hasResourceProperties('AWS::Events::EventBus', {
      // No fixed name: CDK's, unique to the stack and construct path (two stacks never collide).
      Name: Match.stringLikeRegexp('^TaskLeaseTestTaskLeaseBus[0-9A-F]{8}$'),
      DeadLetterConfig: { Arn: r(tl.deadLetterQueues.delivery.queueArn) },
    });
    // The producers statement and the broker's four (test/infra/bus-policy.test.ts).
    t.resourceCountIs('AWS::Events::EventBusPolicy', 5);
    t.hasResourceProperties('AWS::Events::EventBusPolicy', {
      EventBusName: r(tl.bus.eventBusName),
      Statement: {
        Sid: 'cdk-TaskEventProducers',
        Effect: 'Allow',
        Action: 'events:PutEvents',
        Principal: { AWS: r(`arn:${Aws.PARTITION}:iam::${Aws.ACCOUNT_ID}:root`) },
        Resource: r(tl.bus.eventBusArn),
        Condition: { 'ForAllValues:StringEquals': { 'events:detail-type': [DETAIL_TYPES.taskStarted, DETAIL_TYPES.taskEnded] } },
      },
    });
  });

  it('routes by detail-type: Task Started and Task Ended each to their own queue, failures to the delivery DLQ', () => {
    const rules = t.findResources('AWS::Events::Rule');
    expect(Object.keys(rules)).toHaveLength(2);
    const routes: [string, string][] = [
      [DETAIL_TYPES.taskStarted, 'task-started'],
      [DETAIL_TYPES.taskEnded, 'task-ended'],
    ];
    for (const [detailType, queue] of routes) {
      t.hasResourceProperties('AWS::Events::Rule', {
        EventBusName: r(tl.bus.eventBusName),
        EventPattern: { 'detail-type': [detailType] },
        Targets: [
          Match.objectLike({
            Arn: r(tl.queues[queue as 'task-started' | 'task-ended'].queueArn),
            DeadLetterConfig: { Arn: r(tl.deadLetterQueues.delivery.queueArn) },
            RetryPolicy: Match.objectLike({ MaximumRetryAttempts: Match.anyValue() }),
          }),
        ],
      });
    }
    // Exactly one detail-type per rule, nothing else in the pattern.
    for (const rule of Object.values(rules)) expect(Object.keys(rule.Properties.EventPattern)).toEqual(['detail-type']);
  });

  it('redrives each work queue to its own DLQ, with a visibility timeout of 6 × the function timeout', () => {
    const fnTimeout = (fn: TaskLeaseFunctionName) =>
      Object.values(t.findResources('AWS::Lambda::Function', { Properties: { Description: Match.anyValue() } })).find(
        (f) => f.Properties.Role['Fn::GetAtt'][0] === id(tl.roles[fn]),
      )!.Properties.Timeout as number;
    const pairs: ['task-started' | 'task-ended' | 'reverify', TaskLeaseFunctionName][] = [
      ['task-started', 'taskStarted'],
      ['task-ended', 'taskEnded'],
      ['reverify', 'reverify'],
    ];
    for (const [queue, fn] of pairs) {
      expect(fnTimeout(fn)).toBe(75); // verifyDeadlineSeconds 45 + 30
      expect(t.toJSON().Resources[id(tl.queues[queue])].Properties).toMatchObject({
        RedrivePolicy: { deadLetterTargetArn: r(tl.deadLetterQueues[queue].queueArn), maxReceiveCount: 5 },
        VisibilityTimeout: 6 * fnTimeout(fn),
      });
    }
    // The re-verify queue delays messages by default.
    t.hasResourceProperties('AWS::SQS::Queue', {
      DelaySeconds: 30,
      RedrivePolicy: { deadLetterTargetArn: r(tl.deadLetterQueues.reverify.queueArn), maxReceiveCount: 5 },
    });
    // DLQs keep messages for the SQS maximum.
    for (const dlq of Object.values(tl.deadLetterQueues)) {
      expect(t.toJSON().Resources[id(dlq)].Properties.MessageRetentionPeriod).toBe(14 * 24 * 3600);
    }
  });

  it('denies every request without TLS on every queue', () => {
    const policies = t.findResources('AWS::SQS::QueuePolicy');
    expect(Object.keys(policies)).toHaveLength(8);
    for (const p of Object.values(policies)) {
      expect(p.Properties.PolicyDocument.Statement).toContainEqual(
        expect.objectContaining({ Effect: 'Deny', Action: 'sqs:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
      );
      // No Allow to everyone.
      for (const st of p.Properties.PolicyDocument.Statement as Statement[]) {
        if (st.Effect === 'Allow') expect(JSON.stringify(st.Principal)).not.toMatch(/"AWS":"\*"|^"\*"$/);
      }
    }
  });

  it('lets EventBridge send to the work queues only for this account, and to the delivery DLQ only from its rules and bus', () => {
    for (const q of ['task-started', 'task-ended'] as const) {
      t.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [r(tl.queues[q].queueUrl)],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Allow',
              Principal: { Service: 'events.amazonaws.com' },
              Action: Match.arrayWith(['sqs:SendMessage']),
              Condition: { StringEquals: { 'aws:SourceAccount': r(Aws.ACCOUNT_ID) } },
            }),
          ]),
        },
      });
    }
    const dlqPolicy = Object.values(t.findResources('AWS::SQS::QueuePolicy')).find(
      (p) => JSON.stringify(p.Properties.Queues) === JSON.stringify([r(tl.deadLetterQueues.delivery.queueUrl)]),
    )!;
    const allows = (dlqPolicy.Properties.PolicyDocument.Statement as Statement[]).filter((st) => st.Effect === 'Allow');
    expect(allows.map((st) => Object.keys(st.Condition?.ArnEquals as object))).toEqual([
      ['aws:SourceArn'],
      ['aws:SourceArn'],
      ['aws:SourceArn'],
    ]);
    expect(allows.map((st) => (st.Condition!.ArnEquals as Record<string, unknown>)['aws:SourceArn'])).toEqual(
      expect.arrayContaining([r(tl.bus.eventBusArn), r(tl.rules['task-started'].ruleArn), r(tl.rules['task-ended'].ruleArn)]),
    );
  });
});

describe('ledger table', () => {
  it('is on-demand with PITR, deletion protection, TTL and the three GSIs of shared/ledger/table.ts', () => {
    t.resourceCountIs('AWS::DynamoDB::Table', 1);
    t.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        DeletionProtectionEnabled: true,
        TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
      }),
    });
    const table = Object.values(t.findResources('AWS::DynamoDB::Table'))[0]!;
    expect(table.Properties.GlobalSecondaryIndexes).toEqual([
      {
        IndexName: 'open',
        KeySchema: [
          { AttributeName: 'openPk', KeyType: 'HASH' },
          { AttributeName: 'openSk', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
      {
        IndexName: 'byWorkload',
        KeySchema: [
          { AttributeName: 'workloadPk', KeyType: 'HASH' },
          { AttributeName: 'requestedAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'KEYS_ONLY' },
      },
      {
        IndexName: 'byTime',
        KeySchema: [
          { AttributeName: 'dayPk', KeyType: 'HASH' },
          { AttributeName: 'requestedAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'KEYS_ONLY' },
      },
    ]);
    expect(table.Properties.AttributeDefinitions).toEqual(
      expect.arrayContaining([
        { AttributeName: 'requestedAt', AttributeType: 'N' },
        { AttributeName: 'openSk', AttributeType: 'S' },
      ]),
    );
  });
});

describe('functions', () => {
  it('run Node.js 24 on ARM64 with active tracing, their own log group with retention, in the VPC', () => {
    const fns = t.findResources('AWS::Lambda::Function');
    expect(Object.keys(fns)).toHaveLength(5);
    for (const fn of Object.values(fns)) {
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        TracingConfig: { Mode: 'Active' },
        VpcConfig: { SubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2'], SecurityGroupIds: ['sg-0ccccccccccccccc3'] },
      });
      const logGroupId = fn.Properties.LoggingConfig.LogGroup.Ref as string;
      expect(t.toJSON().Resources[logGroupId].Properties.RetentionInDays).toBe(90);
    }
  });

  it('get the environment contract of shared/runtime/env.ts, with the config as JSON', () => {
    for (const name of FUNCTIONS) {
      const fn = t.toJSON().Resources[id(tl.functions[name])];
      const vars = fn.Properties.Environment.Variables as Record<string, unknown>;
      // Every name of the contract but TASKLEASE_LEDGER_TRANSACTIONS: absent in a deployed stack (transactions on).
      const { ledgerTransactions, ...deployed } = ENV;
      expect(Object.keys(vars)).toEqual(expect.arrayContaining(Object.values(deployed)));
      expect(vars[ledgerTransactions]).toBeUndefined();
      expect(JSON.parse(vars[ENV.config] as string)).toEqual(JSON.parse(JSON.stringify(config)));
      expect(vars[ENV.tableName]).toEqual(r(tl.table.tableName));
      expect(vars[ENV.eventBusName]).toEqual(r(tl.bus.eventBusName));
      expect(vars[ENV.secretsKmsKeyId]).toEqual(r(tl.key.keyArn));
      expect(vars[ENV.reverifyQueueUrl]).toEqual(r(tl.queues.reverify.queueUrl));
      expect(vars[ENV.verifyDeadlineMs]).toBe('45000');
      // Every function role, so whichever function verifies can read the old secret.
      const joined = vars[ENV.brokerPrincipalArns] as { 'Fn::Join': [string, Array<{ 'Fn::GetAtt': [string, string] }>] };
      expect(joined['Fn::Join'][0]).toBe(',');
      expect(joined['Fn::Join'][1].map((x) => x['Fn::GetAtt'])).toEqual(FUNCTIONS.map((n) => [id(tl.roles[n]), 'Arn']));
      expect(vars.POWERTOOLS_METRICS_NAMESPACE).toBe(METRICS_NAMESPACE);
    }
  });

  it('are bundled by the local esbuild as minified ESM with source maps', () => {
    for (const name of FUNCTIONS) {
      const fn = t.toJSON().Resources[id(tl.functions[name])];
      // The asset's directory is named after its hash, which is the S3 key of the code.
      const assetDir = join(s.outdir, `asset.${(fn.Properties.Code.S3Key as string).replace(/\.zip$/, '')}`);
      expect(existsSync(join(assetDir, 'index.mjs.map'))).toBe(true);
      const code = readFileSync(join(assetDir, 'index.mjs'), 'utf8');
      // The banner that gives bundled CommonJS dependencies (pg, Powertools) their `require` in ESM.
      // Booleans, not toMatch: a failure must not print a megabyte of minified code.
      expect(code.startsWith(ESM_REQUIRE_BANNER), `${name}: ESM require banner`).toBe(true);
      // An ES module export of `handler`, minified (no whitespace inside the braces).
      const exports = code.match(/export\{[^}]*\}/g)?.at(-1) ?? '(no export)';
      expect(exports, `${name}: exports`).toMatch(/^export\{(?:[\w$]+ as [\w$]+,)*[\w$]+ as handler(?:,[\w$]+ as [\w$]+)*\}$/);
      expect(code.includes('//# sourceMappingURL=index.mjs.map'), `${name}: source map comment`).toBe(true);
    }
  });

  it('consume their queue with partial batch failures and a maximum concurrency protecting the databases', () => {
    t.resourceCountIs('AWS::Lambda::EventSourceMapping', 3);
    const pairs: ['task-started' | 'task-ended' | 'reverify', TaskLeaseFunctionName][] = [
      ['task-started', 'taskStarted'],
      ['task-ended', 'taskEnded'],
      ['reverify', 'reverify'],
    ];
    for (const [queue, fn] of pairs) {
      t.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        EventSourceArn: r(tl.queues[queue].queueArn),
        FunctionName: r(tl.functions[fn].functionName),
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        // The smallest targets[].maxConcurrency of the config (orders-db: 8, reports-db: 20).
        ScalingConfig: { MaximumConcurrency: 8 },
        BatchSize: 10,
      });
    }
  });

  it('runs the reaper on an EventBridge Scheduler rate from settings.reaperIntervalSeconds', () => {
    t.resourceCountIs('AWS::Scheduler::Schedule', 1);
    t.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(2 minutes)',
      State: 'ENABLED',
      Target: Match.objectLike({
        Arn: r(tl.functions.reaper.functionArn),
        RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 120 },
      }),
    });
    // No reserved concurrency anywhere (a reservation fails the deploy in low-quota accounts): the
    // reaper is one run at a time by the ledger's lock, no retry (it would overlap the next run),
    // and a failed run lands in the ReaperFailures queue.
    for (const fn of FUNCTIONS) {
      expect(t.toJSON().Resources[id(tl.functions[fn])].Properties.ReservedConcurrentExecutions, fn).toBeUndefined();
    }
    t.resourceCountIs('AWS::Lambda::EventInvokeConfig', 1);
    t.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: r(tl.functions.reaper.functionName),
      Qualifier: '$LATEST',
      MaximumRetryAttempts: 0,
      DestinationConfig: { OnFailure: { Destination: r(tl.deadLetterQueues.reaper.queueArn) } },
    });
    // Lambda sends there with the reaper's role: SendMessage on that queue only (the key through SQS).
    expect(bySid('reaper', 'ReportFailedRuns')).toEqual({
      Sid: 'ReportFailedRuns',
      Effect: 'Allow',
      Action: 'sqs:SendMessage',
      Resource: r(tl.deadLetterQueues.reaper.queueArn),
    });
    for (const fn of ['taskStarted', 'taskEnded', 'reverify', 'operator'] as const) expect(bySid(fn, 'ReportFailedRuns')).toBeUndefined();
    const schedule = Object.values(t.findResources('AWS::Scheduler::Schedule'))[0]!;
    const roleId = schedule.Properties.Target.RoleArn['Fn::GetAtt'][0] as string;
    const statements = identityStatements(t)
      .filter((x) => x.roles.includes(roleId))
      .map((x) => x.statement);
    expect(statements.flatMap((st) => list(st.Action))).toEqual(['lambda:InvokeFunction']);
    expect(list(statements[0]!.Resource)).toEqual([r(tl.functions.reaper.functionArn), r(`${tl.functions.reaper.functionArn}:*`)]);
    t.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({
            Principal: { Service: 'scheduler.amazonaws.com' },
            Condition: { StringEquals: { 'aws:SourceAccount': r(Aws.ACCOUNT_ID) } },
          }),
        ],
      },
    });
  });
});

describe('operator function (break-glass revoke)', () => {
  it('is invoked only directly: no queue, no event source mapping, no async config; the reaper timeout', () => {
    const fn = t.toJSON().Resources[id(tl.functions.operator)].Properties;
    expect(fn.Description).toMatch(/break-glass revoke/);
    expect(fn.Timeout).toBe(300); // reaperTimeout's default: one revoke may prove many leases
    expect(fn.ReservedConcurrentExecutions).toBeUndefined();
    const mappings = Object.values(t.findResources('AWS::Lambda::EventSourceMapping'));
    expect(mappings).toHaveLength(3);
    expect(mappings.map((m) => m.Properties.FunctionName)).not.toContainEqual(r(tl.functions.operator.functionName));
    expect(JSON.stringify(t.findResources('AWS::Lambda::EventInvokeConfig'))).not.toContain(id(tl.functions.operator));
  });

  it('the operators prop gives each principal lambda:InvokeFunction on the operator function, and nothing else', () => {
    const permissions = Object.values(t.findResources('AWS::Lambda::Permission'));
    expect(permissions.map((p) => p.Properties)).toEqual([
      { Action: 'lambda:InvokeFunction', FunctionName: r(tl.functions.operator.functionArn), Principal: ONCALL_ARN },
    ]);
    // Nothing else names the operator principal.
    const mentions = Object.values(t.toJSON().Resources as Record<string, unknown>).filter((res) =>
      JSON.stringify(res).includes(ONCALL_ARN),
    );
    expect(mentions).toHaveLength(1);
  });

  it('revokes (retires secrets, edits the managed roles’ revocation policy) but cannot issue, answer task tokens or read trust bundles', () => {
    const sids = statementsOf('operator')
      .map((st) => st.Sid)
      .filter((sid) => sid !== undefined)
      .sort();
    expect(sids).toEqual(
      [
        'LedgerItems',
        'LedgerIndexes',
        'LedgerLockRelease',
        'PublishOutputEvents',
        'QueueReverify',
        'UseTaskLeaseKey',
        'DenySessionsOnManagedTargetRoles',
        'RetireTaskSecrets',
        'ReadDatabaseAdminSecrets',
      ].sort(),
    );
    const actions = actionsOf('operator');
    expect(actions.filter((a) => a.startsWith('sts:'))).toEqual([]); // no AssumeRole of target roles: it never issues
    expect(actions.filter((a) => a.startsWith('states:'))).toEqual([]); // no task tokens
    expect(actions.filter((a) => a.startsWith('ssm:'))).toEqual([]); // verifies no SVIDs
    for (const a of [
      'secretsmanager:CreateSecret',
      'secretsmanager:PutResourcePolicy',
      'secretsmanager:PutSecretValue',
      'sqs:ReceiveMessage',
    ])
      expect(actions).not.toContain(a);
    // Its statements without a Sid: its own log group, and X-Ray.
    const unnamed = statementsOf('operator').filter((st) => st.Sid === undefined);
    expect(unnamed.flatMap((st) => list(st.Action)).sort()).toEqual(
      ['logs:CreateLogStream', 'logs:PutLogEvents', 'xray:PutTelemetryRecords', 'xray:PutTraceSegments'].sort(),
    );
  });
});

describe('IAM: least privilege', () => {
  const UNSCOPABLE = new Set(['xray:PutTraceSegments', 'xray:PutTelemetryRecords', 'states:SendTaskSuccess', 'states:SendTaskFailure']);

  it('no identity statement grants *, iam:*, sts:* or any service wildcard action', () => {
    const all = identityStatements(t);
    expect(all.length).toBeGreaterThan(20);
    for (const { statement } of all) {
      for (const action of list(statement.Action)) {
        expect(action).not.toBe('*');
        expect(action).not.toMatch(/^(iam|sts):\*$/);
        expect(action, `wildcard action ${action}`).not.toContain('*');
      }
    }
  });

  it('Resource "*" appears only for X-Ray and the Step Functions callbacks', () => {
    const starred = identityStatements(t).filter(({ statement }) => list(statement.Resource).includes('*'));
    expect(starred.length).toBeGreaterThan(0);
    for (const { statement } of starred) {
      for (const action of list(statement.Action)) expect(UNSCOPABLE.has(action), `${action} on *`).toBe(true);
    }
  });

  it('only the issuer and the reaper may answer Step Functions task tokens', () => {
    expect(bySid('taskStarted', 'AnswerStepFunctionsTaskTokens')).toMatchObject({
      Action: ['states:SendTaskSuccess', 'states:SendTaskFailure'],
      Resource: '*',
    });
    expect(bySid('reaper', 'AnswerStepFunctionsTaskTokens')).toBeDefined();
    for (const fn of ['taskEnded', 'reverify', 'operator'] as const)
      expect(actionsOf(fn).filter((a) => a.startsWith('states:'))).toEqual([]);
  });

  it('ledger access is item CRUD on the table and Query on its three indexes, nothing else', () => {
    const tableArn = r(tl.table.tableArn);
    for (const fn of FUNCTIONS) {
      expect(bySid(fn, 'LedgerItems')).toEqual({
        Sid: 'LedgerItems',
        Effect: 'Allow',
        Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Query'],
        Resource: tableArn,
      });
      expect(bySid(fn, 'LedgerIndexes')).toEqual({
        Sid: 'LedgerIndexes',
        Effect: 'Allow',
        Action: 'dynamodb:Query',
        Resource: GSIS.map((g) => r(`${tl.table.tableArn}/index/${g.indexName}`)),
      });
      // Deletes only of lock items (the shared lock's release).
      expect(bySid(fn, 'LedgerLockRelease')).toEqual({
        Sid: 'LedgerLockRelease',
        Effect: 'Allow',
        Action: 'dynamodb:DeleteItem',
        Resource: tableArn,
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['LOCK#*'] } },
      });
      // No other statement mentions DynamoDB.
      expect(statementsOf(fn).filter((st) => list(st.Action).some((a) => a.startsWith('dynamodb:'))).length).toBe(3);
    }
  });

  it('PutEvents only on the tasklease bus; SendMessage only on the re-verify queue; KMS only on the tasklease key', () => {
    for (const fn of FUNCTIONS) {
      expect(bySid(fn, 'PublishOutputEvents')).toMatchObject({ Action: 'events:PutEvents', Resource: r(tl.bus.eventBusArn) });
      expect(bySid(fn, 'QueueReverify')).toMatchObject({ Action: 'sqs:SendMessage', Resource: r(tl.queues.reverify.queueArn) });
      // The key only through the services that hold data under it; nothing encrypts directly (no kms:Encrypt).
      expect(actionsOf(fn).filter((a) => a.startsWith('kms:Encrypt') || a.startsWith('kms:ReEncrypt'))).toEqual([]);
      expect(bySid(fn, 'UseTaskLeaseKey')).toEqual({
        Sid: 'UseTaskLeaseKey',
        Effect: 'Allow',
        Action: ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:DescribeKey'],
        Resource: r(tl.key.keyArn),
        Condition: {
          StringEquals: {
            'kms:ViaService': ['sqs', 'dynamodb', 'secretsmanager', 'events'].map((svc) => r(`${svc}.${Aws.REGION}.amazonaws.com`)),
          },
        },
      });
      // Besides it, only CDK's SqsEventSource grant (grantConsumeMessages) on the queue consumers: a
      // kms:Decrypt of the key without kms:ViaService, in the role's default policy.
      const others = statementsOf(fn).filter((x) => x.Sid !== 'UseTaskLeaseKey' && list(x.Action).some((a) => a.startsWith('kms:')));
      const consumer = ['taskStarted', 'taskEnded', 'reverify'].includes(fn);
      expect(others, fn).toEqual(consumer ? [{ Effect: 'Allow', Action: 'kms:Decrypt', Resource: r(tl.key.keyArn) }] : []);
    }
  });

  it('AssumeRole / TagSession / SetSourceIdentity only for the issuer, only on configured roles tagged tasklease:managed=true', () => {
    expect(bySid('taskStarted', 'AssumeManagedTargetRoles')).toEqual({
      Sid: 'AssumeManagedTargetRoles',
      Effect: 'Allow',
      Action: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'],
      Resource: ROLE_ARN,
      Condition: { StringEquals: { 'aws:ResourceTag/tasklease:managed': 'true' } },
    });
    for (const fn of REVOKERS) expect(actionsOf(fn).filter((a) => a.startsWith('sts:'))).toEqual([]);
  });

  it('role-policy edits (the session deny) only on configured roles tagged tasklease:managed=true', () => {
    for (const fn of FUNCTIONS) {
      expect(bySid(fn, 'DenySessionsOnManagedTargetRoles')).toEqual({
        Sid: 'DenySessionsOnManagedTargetRoles',
        Effect: 'Allow',
        // Nothing ever deletes the revocation policy: no iam:DeleteRolePolicy.
        Action: ['iam:GetRole', 'iam:ListRolePolicies', 'iam:GetRolePolicy', 'iam:PutRolePolicy'],
        Resource: ROLE_ARN,
        Condition: { StringEquals: { 'aws:ResourceTag/tasklease:managed': 'true' } },
      });
      expect(actionsOf(fn).filter((a) => a.startsWith('iam:'))).toHaveLength(4);
    }
  });

  it('Secrets Manager writes only under tasklease/, with the tasklease key and non-public resource policies', () => {
    const taskSecrets = r(`arn:${Aws.PARTITION}:secretsmanager:${Aws.REGION}:${Aws.ACCOUNT_ID}:secret:tasklease/*`);
    expect(bySid('taskStarted', 'CreateTaskSecrets')).toEqual({
      Sid: 'CreateTaskSecrets',
      Effect: 'Allow',
      Action: 'secretsmanager:CreateSecret',
      Resource: taskSecrets,
      Condition: { StringEquals: { 'secretsmanager:KmsKeyArn': r(tl.key.keyArn) } },
    });
    expect(bySid('taskStarted', 'RestrictTaskSecretReaders')).toEqual({
      Sid: 'RestrictTaskSecretReaders',
      Effect: 'Allow',
      Action: 'secretsmanager:PutResourcePolicy',
      Resource: taskSecrets,
      Condition: { Bool: { 'secretsmanager:BlockPublicPolicy': 'true' } },
    });
    expect(bySid('taskStarted', 'WriteTaskSecrets')).toMatchObject({
      Action: ['secretsmanager:PutSecretValue', 'secretsmanager:TagResource'],
      Resource: taskSecrets,
    });
    for (const fn of FUNCTIONS) {
      expect(bySid(fn, 'RetireTaskSecrets')).toMatchObject({
        Action: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue', 'secretsmanager:DeleteSecret'],
        Resource: taskSecrets,
      });
    }
    // Revocation never creates secrets.
    for (const fn of REVOKERS) {
      expect(actionsOf(fn)).not.toContain('secretsmanager:CreateSecret');
      expect(actionsOf(fn)).not.toContain('secretsmanager:PutResourcePolicy');
    }
    // Every Secrets Manager statement is either the tasklease/ prefix or a configured admin secret.
    const admin = bySid('taskStarted', 'ReadDatabaseAdminSecrets')!;
    for (const fn of FUNCTIONS) {
      for (const st of statementsOf(fn).filter((x) => list(x.Action).some((a) => a.startsWith('secretsmanager:')))) {
        expect([taskSecrets, admin.Resource]).toContainEqual(st.Resource);
      }
    }
  });

  it('GetSecretValue on exactly the configured postgres admin secrets (a name gets only its 6-character suffix)', () => {
    for (const fn of FUNCTIONS) {
      expect(bySid(fn, 'ReadDatabaseAdminSecrets')).toEqual({
        Sid: 'ReadDatabaseAdminSecrets',
        Effect: 'Allow',
        Action: 'secretsmanager:GetSecretValue',
        Resource: [
          'arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders-db/admin-AbCdEf',
          r(`arn:${Aws.PARTITION}:secretsmanager:${Aws.REGION}:${Aws.ACCOUNT_ID}:secret:reports-db/admin-??????`),
        ],
      });
    }
  });

  it('only the SVID verifiers (task-started, task-ended) read trust bundles, only the configured SSM parameter', () => {
    for (const fn of ['taskStarted', 'taskEnded'] as const) {
      expect(bySid(fn, 'ReadTrustBundles')).toEqual({
        Sid: 'ReadTrustBundles',
        Effect: 'Allow',
        Action: 'ssm:GetParameter',
        Resource: r(`arn:${Aws.PARTITION}:ssm:${Aws.REGION}:${Aws.ACCOUNT_ID}:parameter/tasklease/bundles/prod`),
      });
      expect(actionsOf(fn).filter((a) => a.startsWith('ssm:'))).toEqual(['ssm:GetParameter']);
    }
    for (const fn of ['reverify', 'reaper', 'operator'] as const) expect(actionsOf(fn).filter((a) => a.startsWith('ssm:'))).toEqual([]);
  });

  it('logs go only to the function’s own log group; the only managed policy is Lambda’s VPC access', () => {
    for (const fn of FUNCTIONS) {
      const logs = statementsOf(fn).filter((st) => list(st.Action).some((a) => a.startsWith('logs:')));
      expect(logs).toHaveLength(1);
      expect(logs[0]!.Resource).toEqual(r(tl.functions[fn].logGroup.logGroupArn));
      expect(t.toJSON().Resources[id(tl.roles[fn])].Properties.ManagedPolicyArns).toEqual([
        r(`arn:${Aws.PARTITION}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole`),
      ]);
    }
  });
});

describe('dashboard and alarms', () => {
  it('has a dashboard with trust debt p50/p90/p99/max and every trust-debt metric', () => {
    t.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const body = dashboardBody(t);
    const search = (metric: string, stat: string) => `SEARCH('Namespace=\\"${METRICS_NAMESPACE}\\" MetricName=\\"${metric}\\"', '${stat}'`;
    for (const stat of ['p50', 'p90', 'p99', 'Maximum']) expect(body).toContain(search(METRIC.trustDebt, stat));
    expect(body).toContain(search(METRIC.openDebtCount, 'Maximum'));
    expect(body).toContain(search(METRIC.openDebtOldest, 'Maximum'));
    expect(body).toContain(search(METRIC.avoidedDebt, 'p50'));
    expect(body).toContain(search(METRIC.revocationFailures, 'Sum'));
    expect(body).toContain(search(METRIC.stillValid, 'Sum'));
    expect(body).toContain(search(METRIC.issuanceLatency, 'p99'));
    expect(body).toContain(search(METRIC.denials, 'Sum'));
    expect(body).toContain("${PROP('Dim.Reason')}");
    expect(body).toContain(search(METRIC.blastRadiusCredentials, 'Maximum'));
    expect(body).toContain(search(METRIC.blastRadiusTargets, 'Maximum'));
    // Every metric tasklease emits is on the dashboard.
    for (const name of Object.values(METRIC)) expect(body, name).toContain(`MetricName=\\"${name}\\"`);
    // The objective is drawn on the open-debt graph (600 s → ms).
    expect(body).toContain('"horizontal":[{"value":600000');
    expect(body).toContain('"type":"alarm"');
  });

  it('alarms when the oldest open debt exceeds the objective', () => {
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: [
        Match.objectLike({ Expression: `SELECT MAX(${METRIC.openDebtOldest}) FROM ${METRICS_NAMESPACE}`, Period: 120, ReturnData: true }),
      ],
      Threshold: 600_000,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 1,
    });
  });

  it('alarms on any still-valid verification and any revocation failure', () => {
    for (const metric of [METRIC.stillValid, METRIC.revocationFailures]) {
      t.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Metrics: [Match.objectLike({ Expression: `SELECT SUM(${metric}) FROM ${METRICS_NAMESPACE}`, Period: 60 })],
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
    }
  });

  it('has one alarm per DLQ (ReaperFailures included) on any visible message, plus one on reaper errors', () => {
    expect(Object.keys(tl.deadLetterQueues).sort()).toEqual(['delivery', 'reaper', 'reverify', 'task-ended', 'task-started']);
    for (const dlq of Object.values(tl.deadLetterQueues)) {
      t.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: r(dlq.queueName) }],
        Statistic: 'Maximum',
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
    }
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: r(tl.functions.reaper.functionName) }],
    });
    // Five DLQs, and open debt, still-valid, revocation failures, reaper errors.
    t.resourceCountIs('AWS::CloudWatch::Alarm', 5 + 4);
    expect(tl.alarms).toHaveLength(9);
  });
});

describe('cdk-nag AwsSolutions', () => {
  it('reports zero unacknowledged findings', () => {
    const failing = s.report.pluginReports.flatMap((p) =>
      p.violations.filter((v) => v.severity === 'error' || v.severity === 'fatal').map((v) => `${p.pluginName}: ${v.ruleName}`),
    );
    expect(failing).toEqual([]);
    expect(s.report.pluginReports.every((p) => p.conclusion === 'success')).toBe(true);
  });

  it('every acknowledgement is a specific finding with a specific reason', () => {
    const acks = new Map<string, string>();
    for (const res of Object.values(
      t.toJSON().Resources as Record<string, { Metadata?: { cdk_nag?: { rules_to_suppress: { id: string; reason: string }[] } } }>,
    )) {
      for (const a of res.Metadata?.cdk_nag?.rules_to_suppress ?? []) acks.set(a.id, a.reason);
    }
    expect([...acks.keys()].sort()).toEqual(
      [
        'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
        'AwsSolutions-IAM5[Resource::*]',
        'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:tasklease/*]',
        'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:reports-db/admin-??????]',
        `AwsSolutions-IAM5[Resource::<${id(tl.functions.reaper)}.Arn>:*]`,
        'AwsSolutions-SQS3',
      ].sort(),
    );
    for (const [rule, reason] of acks) expect(reason.length, rule).toBeGreaterThan(60);
  });
});
