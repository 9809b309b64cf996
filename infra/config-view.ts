import type { TaskLeaseConfig } from '../shared/policy/config.ts';

/*
 * The facts of a tasklease config that shape the infrastructure and belong to no target kind:
 * concurrency bounds, trust bundles, workload readers and the timing settings. What a target
 * needs in AWS comes from its kind's declaration (infra/target-needs.ts).
 */

/** Where the functions attach to a VPC (to reach targets in private subnets). */
export interface TaskLeaseVpcSettings {
  /** The VPC the subnets belong to. */
  readonly vpcId: string;
  /** Private subnets (with a NAT gateway or VPC endpoints for the AWS APIs the functions call). */
  readonly subnetIds: string[];
  /** Security groups allowed to reach the targets. */
  readonly securityGroupIds: string[];
}

export interface InfraConfigView {
  /** Every target's concurrency bound, whatever its kind. */
  targets: { name: string; maxConcurrency?: number }[];
  /** SSM parameter names of trust bundles. */
  ssmBundleParameters: string[];
  /** Trust domains whose bundle source cannot work inside Lambda (`file`, `local`). */
  nonLambdaBundles: { trustDomain: string; source: 'file' | 'local' }[];
  /** AWS principals that read delivered secrets (rules[].awsPrincipal), de-duplicated. */
  readerPrincipals: string[];
  settings: { verifyDeadlineSeconds: number; reaperIntervalSeconds: number; openDebtObjectiveSeconds: number };
}

export function viewConfig(config: TaskLeaseConfig): InfraConfigView {
  const targets = Object.entries(config.targets).map(([name, target]) => ({
    name,
    ...(target.maxConcurrency !== undefined ? { maxConcurrency: target.maxConcurrency } : {}),
  }));

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
