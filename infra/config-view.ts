import type { TaskLeaseConfig } from '../shared/policy/config.ts';

/*
 * The few facts of a tasklease config that shape the infrastructure (IAM resources, VPC,
 * concurrency, schedule, alarm objective), read defensively: target `settings` are driver
 * specific and only validated by the drivers inside the functions.
 */

/** Where the functions that talk to databases attach to a VPC. */
export interface TaskLeaseVpcSettings {
  /** The VPC the subnets belong to. */
  readonly vpcId: string;
  /** Private subnets (with a NAT gateway or VPC endpoints for the AWS APIs the functions call). */
  readonly subnetIds: string[];
  /** Security groups allowed to reach the databases. */
  readonly securityGroupIds: string[];
}

export interface InfraTargetView {
  name: string;
  kind: string;
  maxConcurrency?: number;
  /** aws-role targets: the role tasklease assumes and denies sessions on. */
  roleArn?: string;
  /** postgres targets: the Secrets Manager secret holding the admin password. */
  passwordSecret?: string;
  /** postgres targets: true when a plaintext password is configured (refused in AWS). */
  hasPlaintextPassword: boolean;
  vpc?: TaskLeaseVpcSettings;
}

export interface InfraConfigView {
  targets: InfraTargetView[];
  /** SSM parameter names of trust bundles. */
  ssmBundleParameters: string[];
  /** Trust domains whose bundle source cannot work inside Lambda (`file`, `local`). */
  nonLambdaBundles: { trustDomain: string; source: 'file' | 'local' }[];
  /** AWS principals that read delivered secrets (rules[].awsPrincipal), de-duplicated. */
  readerPrincipals: string[];
  settings: { verifyDeadlineSeconds: number; reaperIntervalSeconds: number; openDebtObjectiveSeconds: number };
}

const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[A-Za-z0-9+=,.@_/-]+$/;

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function stringList(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string' && v.length > 0)) {
    throw new Error(`${what} must be a non-empty list of strings`);
  }
  return value as string[];
}

/** Parses `settings.vpc` of a target, if present. */
export function parseVpcSettings(value: unknown, what: string): TaskLeaseVpcSettings | undefined {
  if (value === undefined) return undefined;
  const v = record(value);
  if (!v || typeof v.vpcId !== 'string' || !v.vpcId) throw new Error(`${what}.vpcId must be a VPC id`);
  return {
    vpcId: v.vpcId,
    subnetIds: stringList(v.subnetIds, `${what}.subnetIds`),
    securityGroupIds: stringList(v.securityGroupIds, `${what}.securityGroupIds`),
  };
}

export function viewConfig(config: TaskLeaseConfig): InfraConfigView {
  const targets = Object.entries(config.targets).map(([name, target]): InfraTargetView => {
    const settings = record(target.settings) ?? {};
    const view: InfraTargetView = {
      name,
      kind: target.kind,
      hasPlaintextPassword: target.kind === 'postgres' && settings.password !== undefined,
    };
    if (target.maxConcurrency !== undefined) view.maxConcurrency = target.maxConcurrency;
    if (target.kind === 'aws-role') {
      const roleArn = settings.roleArn;
      if (typeof roleArn !== 'string' || !ROLE_ARN.test(roleArn)) {
        throw new Error(`targets.${name}.settings.roleArn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)`);
      }
      view.roleArn = roleArn;
    }
    if (target.kind === 'postgres') {
      if (typeof settings.passwordSecret === 'string') view.passwordSecret = settings.passwordSecret;
      const vpc = parseVpcSettings(settings.vpc, `targets.${name}.settings.vpc`);
      if (vpc) view.vpc = vpc;
    }
    return view;
  });

  const ssmBundleParameters: string[] = [];
  const nonLambdaBundles: InfraConfigView['nonLambdaBundles'] = [];
  for (const [trustDomain, td] of Object.entries(config.trustDomains)) {
    if ('ssmParameter' in td.bundle) ssmBundleParameters.push(td.bundle.ssmParameter);
    else if ('file' in td.bundle) nonLambdaBundles.push({ trustDomain, source: 'file' });
    else if ('local' in td.bundle) nonLambdaBundles.push({ trustDomain, source: 'local' });
  }

  const readerPrincipals = [...new Set(config.rules.flatMap((r) => (r.awsPrincipal ? [r.awsPrincipal] : [])))].sort();
  return { targets, ssmBundleParameters, nonLambdaBundles, readerPrincipals, settings: { ...config.settings } };
}
