import type { CfnResource } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { ConfigError } from '../../shared/lease/errors.ts';
import type * as TargetsIndex from '../../shared/targets/index.ts';
import type { AwsEnvironment, AwsNeeds, IamStatementSpec, TargetKind } from '../../shared/targets/kind.ts';
import { awsRoleKind } from '../../shared/targets/aws-role/index.ts';
import { postgresKind } from '../../shared/targets/postgres/index.ts';
import { agreeingVpc, mergeStatements, targetNeeds } from '../../infra/target-needs.ts';
import { configFrom, identityStatements, list, loadFixtureConfig, synth } from './helpers.ts';
import type { Synthesized } from './helpers.ts';

// The kinds' AWS declarations as plain functions (no CDK), how infra merges them, and (through a
// registry with one more, fake kind) that the construct surfaces a kind's warnings and refusals.

const fake = vi.hoisted(() => ({ needs: undefined as undefined | (() => AwsNeeds) }));
vi.mock('../../shared/targets/index.ts', async (importOriginal) => {
  const original = await importOriginal<typeof TargetsIndex>();
  const fakeKind: TargetKind = {
    ...awsRoleKind,
    kind: 'fake',
    settingsSchema: z.strictObject({ arn: z.string() }),
    accessSchema: z.strictObject({}),
    aws: { needs: () => fake.needs!() },
  };
  return { ...original, TARGET_KINDS: [...original.TARGET_KINDS, fakeKind] };
});

const ENV: AwsEnvironment = {
  partition: 'aws',
  region: 'eu-west-1',
  account: '123456789012',
  nag: { partition: '<AWS::Partition>', region: '<AWS::Region>', account: '<AWS::AccountId>' },
};
const pg = (settings: Record<string, unknown>, name = 'app-db') =>
  postgresKind.aws.needs(
    { name, settings: postgresKind.settingsSchema.parse({ host: 'db.internal', database: 'app', user: 'admin', ...settings }), access: {} },
    ENV,
  );
const role = (roleArn: string, name = 'bucket') =>
  awsRoleKind.aws.needs({ name, settings: awsRoleKind.settingsSchema.parse({ roleArn }), access: {} }, ENV);
const configErrorOf = (fn: () => unknown): ConfigError => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('no ConfigError thrown');
};

describe('postgres: what a database target needs in AWS', () => {
  it('every function reads the admin secret; a complete ARN is used as it is, with nothing to acknowledge', () => {
    const arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders-db/admin-AbCdEf';
    expect(pg({ passwordSecret: arn })).toEqual({
      statements: [{ sid: 'ReadDatabaseAdminSecrets', actions: ['secretsmanager:GetSecretValue'], resources: [arn], job: 'any' }],
    });
  });

  it('a secret name or partial ARN matches only the 6-character suffix, with the reason keyed as cdk-nag prints it', () => {
    const [byName] = pg({ passwordSecret: 'reports-db/admin' }).statements;
    expect(byName!.resources).toEqual(['arn:aws:secretsmanager:eu-west-1:123456789012:secret:reports-db/admin-??????']);
    expect(Object.keys(byName!.wildcardReasons ?? {})).toEqual([
      'arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:reports-db/admin-??????',
    ]);
    const partial = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:reports-db/admin';
    const [byPartialArn] = pg({ passwordSecret: partial }).statements;
    expect(byPartialArn!.resources).toEqual([`${partial}-??????`]);
    expect(Object.keys(byPartialArn!.wildcardReasons ?? {})).toEqual([`${partial}-??????`]);
  });

  it('declares the VPC its settings name, and none without one', () => {
    const vpc = { vpcId: 'vpc-0abc', subnetIds: ['subnet-0a', 'subnet-0b'], securityGroupIds: ['sg-0c'] };
    expect(pg({ passwordSecret: 's', vpc }).vpc).toEqual(vpc);
    expect(pg({ passwordSecret: 's' })).not.toHaveProperty('vpc');
  });

  it('refuses a plaintext password (it would land in the template) without repeating it, and a missing secret', () => {
    const err = configErrorOf(() => pg({ password: 'pl41n-Passw0rd' }));
    expect(err.message).toContain('targets app-db: settings.password would be written into the CloudFormation template');
    expect(err.message).not.toContain('pl41n');
    // The settings schema needs one of the two; needs() on its own still refuses neither.
    const settings = {
      ...postgresKind.settingsSchema.parse({ host: 'h', database: 'd', user: 'u', passwordSecret: 's' }),
      passwordSecret: undefined,
    };
    expect(configErrorOf(() => postgresKind.aws.needs({ name: 'x-db', settings, access: {} }, ENV)).message).toMatch(
      /targets\.x-db\.settings\.passwordSecret is required in AWS/,
    );
  });
});

describe('aws-role: what a role target needs in AWS', () => {
  it('assumes at issue and edits the revocation policy at revoke, both only on that role while it carries the managed tag', () => {
    const arn = 'arn:aws:iam::123456789012:role/tasklease-exports';
    const managed = { StringEquals: { 'aws:ResourceTag/tasklease:managed': 'true' } };
    expect(role(arn)).toEqual({
      statements: [
        {
          sid: 'AssumeManagedTargetRoles',
          actions: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'],
          resources: [arn],
          conditions: managed,
          job: 'issue',
        },
        {
          sid: 'DenySessionsOnManagedTargetRoles',
          // Nothing ever deletes the revocation policy: no iam:DeleteRolePolicy.
          actions: ['iam:GetRole', 'iam:ListRolePolicies', 'iam:GetRolePolicy', 'iam:PutRolePolicy'],
          resources: [arn],
          conditions: managed,
          job: 'revoke',
        },
      ],
    });
  });
});

describe('merging the targets’ needs', () => {
  it('the fixture config: one statement per sid with every target’s resources, the VPC of each database target', async () => {
    const needs = targetNeeds(await loadFixtureConfig(), [postgresKind, awsRoleKind], ENV);
    expect(needs.statements.map((s) => [s.sid, s.job, s.resources.length])).toEqual([
      ['ReadDatabaseAdminSecrets', 'any', 2],
      ['AssumeManagedTargetRoles', 'issue', 1],
      ['DenySessionsOnManagedTargetRoles', 'revoke', 1],
    ]);
    expect(Object.keys(needs.statements[0]!.wildcardReasons ?? {})).toHaveLength(1);
    expect(needs.vpcs.map((v) => v.target)).toEqual(['orders-db', 'reports-db']);
    expect(agreeingVpc(needs.vpcs)?.vpcId).toBe('vpc-0123456789abcdef0');
    expect(needs.warnings).toEqual([]);
  });

  it('keeps statements apart that differ in actions, conditions or job, and de-duplicates resources', () => {
    const base: IamStatementSpec = { sid: 'S', actions: ['a:B'], resources: ['r1'], job: 'any' };
    const merged = mergeStatements([
      base,
      { ...base, resources: ['r2', 'r1'], wildcardReasons: { r2: 'why' } },
      { ...base, job: 'issue' },
      { ...base, conditions: { StringEquals: { k: 'v' } } },
      { ...base, actions: ['a:C'] },
    ]);
    expect(merged).toHaveLength(4);
    expect(merged[0]).toEqual({ ...base, resources: ['r1', 'r2'], wildcardReasons: { r2: 'why' } });
    // The inputs are not modified.
    expect(base.resources).toEqual(['r1']);
  });

  it('VPCs must agree (subnet and group order aside), naming the two targets that differ', () => {
    const v = { vpcId: 'vpc-1', subnetIds: ['subnet-1', 'subnet-2'], securityGroupIds: ['sg-1'] };
    expect(agreeingVpc([])).toBeUndefined();
    expect(
      agreeingVpc([
        { target: 'a', vpc: v },
        { target: 'b', vpc: { ...v, subnetIds: ['subnet-2', 'subnet-1'] } },
      ]),
    ).toEqual(v);
    expect(() =>
      agreeingVpc([
        { target: 'a', vpc: v },
        { target: 'b', vpc: v },
        { target: 'c', vpc: { ...v, vpcId: 'vpc-2' } },
      ]),
    ).toThrow(/targets a and c have different settings.vpc/);
  });
});

describe('the construct and a kind’s declaration', () => {
  let current: Synthesized | undefined;
  afterEach(() => {
    current?.cleanup();
    current = undefined;
    fake.needs = undefined;
  });
  const config = () =>
    configFrom(`
audience: tasklease
trustDomains:
  demo.example.org:
    bundle: { url: https://bundle.example.org/jwks }
targets:
  thing:
    kind: fake
    settings: { arn: "arn:aws:fake:::thing" }
    access: { read: {} }
rules:
  - { id: r1, spiffeId: "spiffe://demo.example.org/app", grants: [thing.read], maxLeaseSeconds: 600, awsPrincipal: "arn:aws:iam::123456789012:role/app" }
settings: { verifyDeadlineSeconds: 20, reaperIntervalSeconds: 60, openDebtObjectiveSeconds: 120 }
`);

  it('attaches a kind’s statements by job, acknowledges its wildcards, and shows its warnings at synth', () => {
    fake.needs = () => ({
      statements: [
        {
          sid: 'FakeIssue',
          actions: ['fake:Issue'],
          resources: ['arn:aws:fake:::thing/*'],
          job: 'issue',
          wildcardReasons: { 'arn:aws:fake:::thing/*': 'A fake kind names its per-task children at run time, under this one parent.' },
        },
        { sid: 'FakeRevoke', actions: ['fake:Revoke'], resources: ['arn:aws:fake:::thing'], job: 'revoke' },
      ],
      warnings: ['targets.thing.settings.arn: works, but not fully in AWS'],
    });
    current = synth({ config: config(), bundle: false });
    const tl = current.stack.taskLease;
    const actionsOf = (fn: 'taskStarted' | 'taskEnded') => {
      const roleId = current!.stack.getLogicalId(tl.roles[fn].node.defaultChild as CfnResource);
      return identityStatements(current!.template)
        .filter((x) => x.roles.includes(roleId))
        .flatMap((x) => list(x.statement.Action));
    };
    expect(actionsOf('taskStarted')).toEqual(expect.arrayContaining(['fake:Issue', 'fake:Revoke']));
    expect(actionsOf('taskEnded')).toContain('fake:Revoke');
    expect(actionsOf('taskEnded')).not.toContain('fake:Issue');
    // The wildcard passed cdk-nag because the kind gave its reason.
    expect(current.report.pluginReports.every((p) => p.conclusion === 'success')).toBe(true);
    expect(
      Annotations.fromStack(current.stack).findWarning(
        '*',
        Match.stringLikeRegexp('targets.thing.settings.arn: works, but not fully in AWS'),
      ),
    ).toHaveLength(1);
  });

  it('fails the synth with the ConfigError a kind’s needs() throws', () => {
    fake.needs = () => {
      throw new ConfigError('targets.thing.settings.arn: cannot work in AWS');
    };
    expect(() => synth({ config: config(), bundle: false })).toThrow(new ConfigError('targets.thing.settings.arn: cannot work in AWS'));
  });

  it('fails the synth, naming the Sid, when a kind’s statement would share a Sid with tasklease’s own', () => {
    fake.needs = () => ({ statements: [{ sid: 'LedgerItems', actions: ['fake:Read'], resources: ['arn:aws:fake:::thing'], job: 'any' }] });
    expect(() => synth({ config: config(), bundle: false })).toThrow(/two statements with Sid LedgerItems/);
  });
});
