import { ConfigError } from '../shared/lease/errors.ts';
import type { TaskLeaseConfig } from '../shared/policy/config.ts';

/*
 * Configs that synthesize but cannot work once deployed: refused at synth, every problem at once,
 * each naming its field. Only what is true of AWS and of no target kind in particular lives here;
 * a kind's own AWS limits are in its `aws.needs` (shared/targets/<kind>/aws.ts).
 */

/** Lambda's longest function timeout. */
export const LAMBDA_TIMEOUT_MAX_SECONDS = 900;
/** What a queue-driven function needs after its verify deadline (the rest of the batch, the hand-over to re-verify). */
export const FUNCTION_TIMEOUT_SLACK_SECONDS = 30;

/**
 * Every reason `config` cannot work in a deployed stack; empty when it can. `grantBounds`: the
 * longest credential each bounded target issues (TargetNeeds.maxGrantSeconds).
 */
export function deploymentProblems(config: TaskLeaseConfig, grantBounds: ReadonlyMap<string, number> = new Map()): string[] {
  const problems: string[] = [];
  for (const [trustDomain, td] of Object.entries(config.trustDomains)) {
    if ('local' in td.bundle) {
      problems.push(
        `trustDomains.${trustDomain}.bundle.local: a 'local' bundle exists only in the local runtime (npm start), so every function of the stack would fail at start-up; use bundle.url (the SPIRE bundle endpoint, https) or bundle.ssmParameter`,
      );
    } else if ('file' in td.bundle) {
      problems.push(
        `trustDomains.${trustDomain}.bundle.file: a file path is not in the Lambda bundle, so SVIDs of ${trustDomain} could never be verified; use bundle.url or bundle.ssmParameter`,
      );
    }
  }

  const timeout = Math.max(60, config.settings.verifyDeadlineSeconds + FUNCTION_TIMEOUT_SLACK_SECONDS);
  if (timeout > LAMBDA_TIMEOUT_MAX_SECONDS) {
    problems.push(
      `settings.verifyDeadlineSeconds: ${config.settings.verifyDeadlineSeconds} s plus ${FUNCTION_TIMEOUT_SLACK_SECONDS} s makes a function timeout of ${timeout} s, over Lambda's ${LAMBDA_TIMEOUT_MAX_SECONDS} s; use at most ${LAMBDA_TIMEOUT_MAX_SECONDS - FUNCTION_TIMEOUT_SLACK_SECONDS} (a credential not yet proven rejected moves to the re-verify queue anyway)`,
    );
  }

  config.rules.forEach((rule, i) => {
    if (!rule.awsPrincipal) {
      problems.push(
        `rules[${i}].awsPrincipal: rule '${rule.id}' names no AWS principal, and a delivered secret's resource policy admits only that principal, so no lease under it could ever be delivered; set it to the workload's IAM role ARN`,
      );
    }
    for (const grant of rule.grants) {
      const [targetName = ''] = grant.split('.');
      const max = grantBounds.get(targetName);
      if (max !== undefined && rule.maxLeaseSeconds > max) {
        problems.push(
          `rules[${i}].maxLeaseSeconds: ${rule.maxLeaseSeconds} s, but target ${targetName} (${config.targets[targetName]?.kind}) issues credentials of at most ${max} s and nothing renews them, so grant ${grant} would expire before a long task ends; use at most ${max}`,
        );
      }
    }
  });
  return problems;
}

/** Throws one ConfigError listing every deployment problem. */
export function assertDeployable(config: TaskLeaseConfig, grantBounds?: ReadonlyMap<string, number>): void {
  const problems = deploymentProblems(config, grantBounds);
  if (problems.length === 0) return;
  throw new ConfigError(`this config cannot be deployed to AWS:\n  - ${problems.join('\n  - ')}`);
}
