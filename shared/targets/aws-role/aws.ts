import { ConfigError } from '../../lease/errors.ts';
import type { AwsDeclaration } from '../kind.ts';
import { MANAGED_TAG, ROLE_ARN } from './names.ts';
import type { AwsRoleAccess, AwsRoleSettings } from './settings.ts';

/**
 * STS caps a role-chained session at one hour, and a Lambda function calling AssumeRole is
 * always chaining (its own credentials are a role session).
 */
export const ROLE_CHAINING_MAX_SECONDS = 3600;

/** An account id synth knows (a 12-digit literal, not a deploy-time token). */
const KNOWN_ACCOUNT = /^\d{12}$/;

/**
 * Assume only at issue; the revocation policy edits serve every function that may revoke.
 *
 * The identity statement is scoped to the configured role and to the managed tag, but IAM ignores
 * it when the role's trust policy names the function role itself (a same-account trust policy
 * that names a principal is enough on its own). To make both count, the trust policy names the
 * account and conditions on the principal:
 *   Principal: { AWS: arn:aws:iam::<account>:root },
 *   Action: [sts:AssumeRole, sts:TagSession, sts:SetSourceIdentity],
 *   Condition: { ArnEquals: { aws:PrincipalArn: <TaskStartedRoleArn stack output> } }
 * Then the trust policy admits only the task-started role, and the call needs this statement too.
 */
export const awsRoleAws: AwsDeclaration<AwsRoleSettings, AwsRoleAccess> = {
  needs(target, env) {
    const { roleArn, maxSessionSeconds } = target.settings;
    if (maxSessionSeconds > ROLE_CHAINING_MAX_SECONDS) {
      throw new ConfigError(
        `targets.${target.name}.settings.maxSessionSeconds: ${maxSessionSeconds} s, but the broker's functions assume the role with their own role session (role chaining), which STS caps at ${ROLE_CHAINING_MAX_SECONDS} s: every issue would fail; use at most ${ROLE_CHAINING_MAX_SECONDS}`,
      );
    }
    const account = ROLE_ARN.exec(roleArn)?.[2];
    if (account && KNOWN_ACCOUNT.test(env.account) && account !== env.account) {
      throw new ConfigError(
        `targets.${target.name}.settings.roleArn: role of account ${account}, but the stack deploys to ${env.account}; the broker edits the role's revocation policy through IAM in its own account (by role name), so a role of another account can never be revoked`,
      );
    }
    // The driver refuses an untagged role too; IAM enforces the same tag, so a mistake cannot widen access.
    const managedRole = { StringEquals: { [`aws:ResourceTag/${MANAGED_TAG.key}`]: MANAGED_TAG.value } };
    return {
      statements: [
        {
          sid: 'AssumeManagedTargetRoles',
          actions: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'],
          resources: [roleArn],
          conditions: managedRole,
          job: 'issue',
        },
        {
          // GetRole: the tag check and the role id; List/GetRolePolicy: the revocation policy and the
          // size of the role's other inline policies (IAM's limit is for all of them together).
          // Nothing ever deletes a policy, so no iam:DeleteRolePolicy.
          sid: 'DenySessionsOnManagedTargetRoles',
          actions: ['iam:GetRole', 'iam:ListRolePolicies', 'iam:GetRolePolicy', 'iam:PutRolePolicy'],
          resources: [roleArn],
          conditions: managedRole,
          job: 'revoke',
        },
      ],
      ...(KNOWN_ACCOUNT.test(env.account)
        ? {}
        : {
            warnings: [
              `settings.roleArn is checked against the stack's account only when synth knows it (cdk deploy with credentials, or an env on the stack): the role must be in the account the stack deploys to`,
            ],
          }),
    };
  },
  /** Nothing renews a session: a lease may not outlive the longest one. */
  maxGrantSeconds: (target) => Math.min(target.settings.maxSessionSeconds, ROLE_CHAINING_MAX_SECONDS),
};
