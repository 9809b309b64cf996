import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type { Stack } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { afterEach, describe, expect, it } from 'vitest';
import type { TaskLeaseProps } from '../../infra/task-lease.ts';
import { configFrom, identityStatements, list, synth } from './helpers.ts';
import type { Synthesized } from './helpers.ts';

// Template-only checks of the construct's props and config handling: bundling is skipped
// (CDK's `aws:cdk:bundling-stacks`), the cdk-nag plugin still runs on every synth.

const yaml = (extra: { targets?: string; rules?: string; settings?: string; trustDomains?: string } = {}) => `
audience: tasklease
trustDomains:
${extra.trustDomains ?? '  demo.example.org:\n    bundle: { url: https://bundle.example.org/jwks }'}
targets:
${
  extra.targets ??
  `  app-db:
    kind: postgres
    settings: { host: db.internal, database: app, user: admin, passwordSecret: app-db/admin }
    access: { read: { groupRole: app_read } }`
}
rules:
${extra.rules ?? `  - { id: r1, spiffeId: "spiffe://demo.example.org/app", grants: [app-db.read], maxLeaseSeconds: 600, ${PRINCIPAL} }`}
settings:
${extra.settings ?? '  verifyDeadlineSeconds: 20\n  reaperIntervalSeconds: 30\n  openDebtObjectiveSeconds: 120'}
`;

const PRINCIPAL = 'awsPrincipal: "arn:aws:iam::123456789012:role/app"';

let current: Synthesized | undefined;
afterEach(() => {
  current?.cleanup();
  current = undefined;
});

function build(configYaml: string, taskLease: Omit<TaskLeaseProps, 'config'> = {}): Synthesized {
  current = synth({ config: configFrom(configYaml), bundle: false, stackProps: { taskLease } });
  return current;
}

const fnProps = (s: Synthesized) =>
  Object.values(s.template.findResources('AWS::Lambda::Function')).map((f) => f.Properties as Record<string, unknown>);

describe('defaults without a VPC, aws-role targets or SSM bundles', () => {
  it('grants nothing for what is not configured and uses the documented defaults', () => {
    const s = build(yaml());
    for (const p of fnProps(s)) {
      expect(p.VpcConfig).toBeUndefined();
      expect(p.MemorySize).toBe(512);
    }
    // Queue-driven functions: max(60, verifyDeadlineSeconds 20 + 30); the reaper and the operator: 5 minutes.
    expect(
      fnProps(s)
        .map((p) => p.Timeout as number)
        .sort((a, b) => a - b),
    ).toEqual([60, 60, 60, 300, 300]);
    const actions = identityStatements(s.template).flatMap((x) => list(x.statement.Action));
    expect(actions.filter((a) => a.startsWith('sts:') || a.startsWith('iam:') || a.startsWith('ssm:'))).toEqual([]);
    for (const role of Object.values(s.template.findResources('AWS::IAM::Role'))) expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    // No target sets maxConcurrency → 10; the reaper interval (30 s) rounds up to Scheduler's minimum.
    s.template.allResourcesProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 10 } });
    s.template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(1 minute)' });
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', { Threshold: 120_000, ComparisonOperator: 'GreaterThanThreshold' });
    s.template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'TaskLease-TaskLease' });
    // Retained by default: the ledger and the key that decrypts it.
    s.template.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Retain' });
    s.template.hasResource('AWS::KMS::Key', { DeletionPolicy: 'Retain' });
    // Every rule names its awsPrincipal (deployability refuses one without): the key policy lets exactly
    // that workload decrypt, only through Secrets Manager (the fixture's two principals: task-lease.test.ts).
    const keyStatements = Object.values(s.template.findResources('AWS::KMS::Key'))[0]!.Properties.KeyPolicy.Statement as {
      Sid?: string;
      Principal?: unknown;
    }[];
    expect(keyStatements.filter((st) => st.Sid === 'WorkloadsDecryptDeliveredSecrets').map((st) => st.Principal)).toEqual([
      { AWS: 'arn:aws:iam::123456789012:role/app' },
    ]);
    expect(s.report.pluginReports.flatMap((p) => p.violations)).toEqual([]);
  });

  it('reserves no concurrency (a reservation fails the deploy in low-quota accounts), and the reaper neither retries nor loses a failed run', () => {
    const s = build(yaml());
    for (const p of fnProps(s)) expect(p.ReservedConcurrentExecutions).toBeUndefined();
    const [invokeConfig, ...more] = Object.values(s.template.findResources('AWS::Lambda::EventInvokeConfig'));
    expect(more).toEqual([]);
    const tl = s.stack.taskLease;
    expect(invokeConfig!.Properties).toEqual({
      FunctionName: s.stack.resolve(tl.functions.reaper.functionName),
      Qualifier: '$LATEST',
      MaximumRetryAttempts: 0,
      DestinationConfig: { OnFailure: { Destination: s.stack.resolve(tl.deadLetterQueues.reaper.queueArn) } },
    });
  });

  it('names no bus: two stacks in one account and region get two buses', () => {
    const names = ['One', 'Two'].map((stackId) => {
      const s = synth({ config: configFrom(yaml()), bundle: false, stackId });
      const bus = Object.values(s.template.findResources('AWS::Events::EventBus'))[0]!;
      s.cleanup();
      return bus.Properties.Name as string;
    });
    expect(typeof names[0]).toBe('string');
    expect(names[0]).not.toBe(names[1]);
  });
});

describe('props', () => {
  it('applies overrides: bus, producers, objective, concurrency, retention, removal, alarm topic, timeouts', () => {
    const topicArn = 'arn:aws:sns:eu-west-1:123456789012:tasklease-alarms';
    current = synth({
      config: configFrom(yaml()),
      bundle: false,
      stackProps: {
        alarmTopicArn: topicArn,
        taskLease: {
          busName: 'workflows',
          eventProducerAccounts: ['111122223333'],
          eventProducerPrincipalArns: ['arn:aws:iam::444455556666:role/engine'],
          openDebtObjective: Duration.seconds(30),
          maxConcurrency: 3,
          batchSize: 5,
          maxReceiveCount: 3,
          removalPolicy: RemovalPolicy.DESTROY,
          deletionProtection: false,
          logRetention: RetentionDays.ONE_WEEK,
          functionTimeout: Duration.minutes(2),
          reaperTimeout: Duration.minutes(10),
          reservedConcurrency: { reaper: 1 },
          tracing: false,
          dashboardName: 'tl-test',
        },
      },
    });
    const t = current.template;
    t.hasResourceProperties('AWS::Events::EventBus', { Name: 'workflows' });
    t.hasResourceProperties('AWS::Events::EventBusPolicy', {
      Statement: Match.objectLike({
        Action: 'events:PutEvents',
        Principal: {
          AWS: [
            { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::111122223333:root']] },
            'arn:aws:iam::444455556666:role/engine',
          ],
        },
      }),
    });
    t.allResourcesProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 3 }, BatchSize: 5 });
    t.hasResourceProperties('AWS::CloudWatch::Alarm', { Threshold: 30_000, ComparisonOperator: 'GreaterThanThreshold' });
    t.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete', Properties: Match.objectLike({ DeletionProtectionEnabled: false }) });
    t.hasResource('AWS::KMS::Key', { DeletionPolicy: 'Delete' });
    t.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    t.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'tl-test' });
    const alarms = Object.values(t.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms).toHaveLength(9);
    for (const alarm of alarms) {
      expect(alarm.Properties.AlarmActions).toEqual([topicArn]);
      expect(alarm.Properties.OKActions).toEqual([topicArn]);
    }
    expect(
      fnProps(current)
        .map((p) => p.Timeout as number)
        .sort((a, b) => a - b),
    ).toEqual([120, 120, 120, 600, 600]);
    // Visibility timeout 6 × 120 s; redrive after 3 receives.
    t.hasResourceProperties('AWS::SQS::Queue', { VisibilityTimeout: 720, RedrivePolicy: Match.objectLike({ maxReceiveCount: 3 }) });
    // The prop still reserves where asked.
    expect(fnProps(current).filter((p) => p.ReservedConcurrentExecutions === 1)).toHaveLength(1);
    // tracing: false is Tracing.DISABLED: no TracingConfig (Lambda's default, PassThrough) and no X-Ray grant.
    for (const p of fnProps(current)) expect(p.TracingConfig).toBeUndefined();
    expect(
      identityStatements(t)
        .flatMap((x) => list(x.statement.Action))
        .filter((a) => a.startsWith('xray:')),
    ).toEqual([]);
    expect(current.report.pluginReports.flatMap((p) => p.violations)).toEqual([]);
  });

  it('attaches to a VPC given as a prop', () => {
    const vpc = {
      vpcId: 'vpc-0123456789abcdef0',
      subnetIds: ['subnet-0123456789abcdef0'],
      securityGroupIds: ['sg-0123456789abcdef0', 'sg-0123456789abcdef1'],
    };
    const s = build(yaml(), { vpc });
    for (const p of fnProps(s)) expect(p.VpcConfig).toEqual({ SubnetIds: vpc.subnetIds, SecurityGroupIds: vpc.securityGroupIds });
    expect(s.report.pluginReports.flatMap((p) => p.violations)).toEqual([]);
  });
});

const refusal = (configYaml: string, taskLease: Omit<TaskLeaseProps, 'config'> = {}, stackAccount?: string): string => {
  try {
    current = synth({
      config: configFrom(configYaml),
      bundle: false,
      stackProps: { taskLease, ...(stackAccount ? { env: { account: stackAccount, region: 'eu-west-1' } } : {}) },
    });
  } catch (err) {
    return (err as Error).message;
  }
  return '(synthesized)';
};
const role = (settings = '') => `  bucket:
    kind: aws-role
    settings: { roleArn: "arn:aws:iam::123456789012:role/tl-bucket"${settings} }
    access: { read: { sessionPolicy: { Statement: [{ Effect: Allow, Action: "s3:GetObject", Resource: "*" }] } } }`;
const bucketRule = (seconds = 600) =>
  `  - { id: r1, spiffeId: "spiffe://demo.example.org/app", grants: [bucket.read], maxLeaseSeconds: ${seconds}, ${PRINCIPAL} }`;

describe('configs that synthesize but could not work once deployed are refused, naming the field and the reason', () => {
  it('a local or file trust bundle: every function would fail at start-up', () => {
    expect(refusal(yaml({ trustDomains: '  demo.example.org:\n    bundle: { local: true }' }))).toMatch(
      /trustDomains\.demo\.example\.org\.bundle\.local: a 'local' bundle exists only in the local runtime/,
    );
    expect(refusal(yaml({ trustDomains: '  demo.example.org:\n    bundle: { file: /etc/bundle.json }' }))).toMatch(
      /trustDomains\.demo\.example\.org\.bundle\.file: a file path is not in the Lambda bundle/,
    );
  });

  it('a rule without awsPrincipal: nothing issued under it could be delivered', () => {
    const message = refusal(
      yaml({ rules: '  - { id: r1, spiffeId: "spiffe://demo.example.org/app", grants: [app-db.read], maxLeaseSeconds: 600 }' }),
    );
    expect(message).toMatch(/rules\[0\]\.awsPrincipal: rule 'r1' names no AWS principal/);
  });

  it('a verify deadline that makes the function timeout exceed 900 s', () => {
    const message = refusal(yaml({ settings: '  verifyDeadlineSeconds: 880' }));
    expect(message).toMatch(
      /settings\.verifyDeadlineSeconds: 880 s plus 30 s makes a function timeout of 910 s, over Lambda's 900 s; use at most 870/,
    );
    expect(refusal(yaml({ settings: '  verifyDeadlineSeconds: 870' }))).toBe('(synthesized)');
  });

  it('aws-role: sessions over 1 h (role chaining), leases longer than the session, a role of another account', () => {
    expect(refusal(yaml({ targets: role(', maxSessionSeconds: 7200'), rules: bucketRule() }))).toMatch(
      /targets\.bucket\.settings\.maxSessionSeconds: 7200 s, .*role chaining.*3600 s/,
    );
    expect(refusal(yaml({ targets: role(', maxSessionSeconds: 1800'), rules: bucketRule(3600) }))).toMatch(
      /rules\[0\]\.maxLeaseSeconds: 3600 s, but target bucket \(aws-role\) issues credentials of at most 1800 s/,
    );
    expect(refusal(yaml({ targets: role(), rules: bucketRule(3600) }))).toBe('(synthesized)');
    expect(refusal(yaml({ targets: role(), rules: bucketRule() }), {}, '999999999999')).toMatch(
      /targets\.bucket\.settings\.roleArn: role of account 123456789012, but the stack deploys to 999999999999/,
    );
    expect(refusal(yaml({ targets: role(), rules: bucketRule() }), {}, '123456789012')).toBe('(synthesized)');
  });

  it('lists every problem at once', () => {
    const message = refusal(
      yaml({
        trustDomains: '  demo.example.org:\n    bundle: { local: true }',
        rules: '  - { id: r1, spiffeId: "spiffe://demo.example.org/app", grants: [app-db.read], maxLeaseSeconds: 600 }',
      }),
    );
    expect(message).toContain('bundle.local');
    expect(message).toContain('rules[0].awsPrincipal');
  });
});

describe('configs that cannot work in AWS are refused at synth', () => {
  it('a plaintext postgres password (it would land in the template), without echoing it', () => {
    const config = yaml({
      targets: `  app-db:
    kind: postgres
    settings: { host: db.internal, database: app, user: admin, password: "s3cr3t-Pa55" }
    access: { read: { groupRole: app_read } }`,
    });
    let message = '';
    try {
      build(config);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('targets app-db: settings.password would be written into the CloudFormation template');
    expect(message).not.toContain('s3cr3t');
  });

  it('postgres targets in different VPCs', () => {
    const pg = (name: string, vpc: string) => `  ${name}:
    kind: postgres
    settings: { host: h, database: d, user: u, passwordSecret: s, vpc: { vpcId: ${vpc}, subnetIds: [subnet-1], securityGroupIds: [sg-1] } }
    access: { read: { groupRole: r } }
`;
    expect(() =>
      build(
        yaml({
          targets: pg('a-db', 'vpc-1') + pg('b-db', 'vpc-2'),
          rules: `  - { id: r1, spiffeId: "spiffe://demo.example.org/app", grants: [a-db.read], maxLeaseSeconds: 600, ${PRINCIPAL} }`,
        }),
      ),
    ).toThrow(/targets a-db and b-db have different settings.vpc/);
  });

  it('an aws-role target without a role ARN', () => {
    const targets = `  bucket:
    kind: aws-role
    settings: { roleArn: not-an-arn }
    access: { read: {} }`;
    expect(() =>
      build(
        yaml({
          targets,
          rules: `  - { id: r1, spiffeId: "spiffe://demo.example.org/app", grants: [bucket.read], maxLeaseSeconds: 600, ${PRINCIPAL} }`,
        }),
      ),
    ).toThrow(
      // The kind's settings schema refuses it once, in the config validator's form (path: message).
      /targets\.bucket\.settings\.roleArn: must be an IAM role ARN/,
    );
  });

  it('an event-source concurrency outside 2..1000 and a timeout that leaves no room for the verify deadline', () => {
    expect(() => build(yaml(), { maxConcurrency: 1 })).toThrow(/maxConcurrency must be between 2 and 1000/);
    expect(() => build(yaml(), { functionTimeout: Duration.seconds(20) })).toThrow(/must exceed settings.verifyDeadlineSeconds/);
  });

  it('a config too large for the Lambda environment', () => {
    const rules = Array.from(
      { length: 60 },
      (_, i) =>
        `  - { id: rule-${i}, spiffeId: "spiffe://demo.example.org/app/${i}", grants: [app-db.read], maxLeaseSeconds: 600, ${PRINCIPAL} }`,
    ).join('\n');
    expect(() => build(yaml({ rules }))).toThrow(/over Lambda's 4096-byte limit/);
  });
});

describe('cdk-nag wiring of buildApp', () => {
  it('fails the synth on an unacknowledged AwsSolutions finding', () => {
    // A queue with neither a DLQ nor TLS enforcement, next to the construct.
    const careless = (stack: Stack) => new sqs.Queue(stack, 'Careless', { encryption: sqs.QueueEncryption.SQS_MANAGED });
    expect(() => synth({ config: configFrom(yaml()), bundle: false, extend: careless })).toThrow(/AwsSolutions-SQS3/);
    expect(() => synth({ config: configFrom(yaml()), bundle: false, extend: careless })).toThrow(/AwsSolutions-SQS4/);
  });
});
