import { ConfigError } from '../../lease/errors.ts';
import { PROBE_STATEMENT_SID } from './names.ts';
import type { AwsRoleProbe } from './probes.ts';
import { SESSION_POLICY_MAX_CHARS } from './settings.ts';
import type { AwsRoleAccess } from './settings.ts';

/**
 * Each access level's session policy as STS receives it: the configured statements plus one
 * allowing the probe (a session can only do what both the role's policies and the session policy
 * allow, so without it the probe would be denied for live sessions too).
 */
export function sessionPoliciesFor(target: string, access: Record<string, AwsRoleAccess>, probe: AwsRoleProbe): Map<string, string> {
  const policies = new Map<string, string>();
  for (const [level, { sessionPolicy }] of Object.entries(access)) {
    if (sessionPolicy.Statement.some((s) => s.Sid === PROBE_STATEMENT_SID)) {
      throw new ConfigError(
        `target ${target}: access.${level}.sessionPolicy: Sid ${PROBE_STATEMENT_SID} is reserved for the revocation probe`,
      );
    }
    const policy = JSON.stringify({
      ...sessionPolicy,
      Statement: [
        ...sessionPolicy.Statement,
        { Sid: PROBE_STATEMENT_SID, Effect: 'Allow', Action: probe.action, Resource: probe.resource },
      ],
    });
    if (policy.length > SESSION_POLICY_MAX_CHARS) {
      throw new ConfigError(
        `target ${target}: access.${level}.sessionPolicy: ${policy.length} characters with the probe statement; STS allows ${SESSION_POLICY_MAX_CHARS}`,
      );
    }
    policies.set(level, policy);
  }
  return policies;
}
