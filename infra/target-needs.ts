import { Aws, Token } from 'aws-cdk-lib';
import { validateTargets } from '../shared/policy/config.ts';
import type { TaskLeaseConfig } from '../shared/policy/config.ts';
import type { AwsEnvironment, IamStatementSpec, TargetKind, VpcSpec } from '../shared/targets/kind.ts';

/*
 * What the configured targets need in AWS, from their kinds' declarations: infra never looks at a
 * kind's settings itself, so a new kind brings its IAM statements and network with its folder.
 */

/** What every configured target needs, merged. */
export interface TargetNeeds {
  /** One statement per sid + actions + conditions + job, with the union of the targets' resources. */
  statements: IamStatementSpec[];
  /** The VPCs the targets declare (`agreeingVpc` picks the one the functions attach to). */
  vpcs: { target: string; vpc: VpcSpec }[];
  warnings: { target: string; message: string }[];
  /** The longest credential each target whose kind bounds it can issue (deployability.ts). */
  maxGrantSeconds: Map<string, number>;
}

/**
 * The deploy-time environment: CloudFormation pseudo parameters, and how cdk-nag prints them. The
 * account is the stack's own when synth knows it (`cdk deploy` with credentials sets
 * CDK_DEFAULT_ACCOUNT), so a kind can refuse a resource of another account at synth.
 */
export function awsEnvironment(knownAccount?: string): AwsEnvironment {
  return {
    partition: Aws.PARTITION,
    region: Aws.REGION,
    account: knownAccount && !Token.isUnresolved(knownAccount) ? knownAccount : Aws.ACCOUNT_ID,
    nag: { partition: '<AWS::Partition>', region: '<AWS::Region>', account: '<AWS::AccountId>' },
  };
}

/**
 * Validates the targets against their kinds (a ConfigError naming the field on a bad setting) and
 * collects each one's AWS needs; a ConfigError from a kind's `needs` fails the synth with its message.
 */
export function targetNeeds(config: TaskLeaseConfig, kinds: readonly TargetKind[], env: AwsEnvironment = awsEnvironment()): TargetNeeds {
  const byKind = new Map(kinds.map((k) => [k.kind, k]));
  const statements: IamStatementSpec[] = [];
  const vpcs: { target: string; vpc: VpcSpec }[] = [];
  const warnings: TargetNeeds['warnings'] = [];
  const maxGrantSeconds = new Map<string, number>();
  for (const target of validateTargets(config, kinds)) {
    // validateTargets refuses unknown kinds, so the lookup always finds one.
    const kind = byKind.get(target.kind)!;
    const configured = {
      name: target.name,
      settings: target.settings,
      access: target.access,
      ...(target.maxConcurrency !== undefined ? { maxConcurrency: target.maxConcurrency } : {}),
    };
    const needs = kind.aws.needs(configured, env);
    const bound = kind.aws.maxGrantSeconds?.(configured);
    if (bound !== undefined) maxGrantSeconds.set(target.name, bound);
    statements.push(...needs.statements);
    if (needs.vpc) vpcs.push({ target: target.name, vpc: needs.vpc });
    for (const message of needs.warnings ?? []) warnings.push({ target: target.name, message });
  }
  return { statements: mergeStatements(statements), vpcs, warnings, maxGrantSeconds };
}

/** Statements that differ only in their resources become one (so N targets of a kind give one statement). */
export function mergeStatements(specs: readonly IamStatementSpec[]): IamStatementSpec[] {
  const merged = new Map<string, IamStatementSpec>();
  for (const spec of specs) {
    const key = JSON.stringify([spec.sid, spec.actions, spec.conditions ?? null, spec.job]);
    const seen = merged.get(key);
    if (!seen) {
      merged.set(key, {
        ...spec,
        actions: [...spec.actions],
        resources: [...new Set(spec.resources)],
        ...(spec.wildcardReasons ? { wildcardReasons: { ...spec.wildcardReasons } } : {}),
      });
      continue;
    }
    for (const r of spec.resources) if (!seen.resources.includes(r)) seen.resources.push(r);
    if (spec.wildcardReasons) seen.wildcardReasons = { ...seen.wildcardReasons, ...spec.wildcardReasons };
  }
  return [...merged.values()];
}

/** The functions attach to one VPC: every target that declares one must declare the same. */
export function agreeingVpc(found: readonly { target: string; vpc: VpcSpec }[]): VpcSpec | undefined {
  const first = found[0];
  if (!first) return undefined;
  const key = (v: VpcSpec) => JSON.stringify([v.vpcId, [...v.subnetIds].sort(), [...v.securityGroupIds].sort()]);
  const other = found.find((f) => key(f.vpc) !== key(first.vpc));
  if (other) {
    throw new Error(
      `targets ${first.target} and ${other.target} have different settings.vpc; the functions attach to one VPC: pass TaskLeaseProps.vpc with subnets and security groups that reach every target`,
    );
  }
  return first.vpc;
}
