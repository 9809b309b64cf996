import type { AwsDeclaration } from '../kind.ts';
import { MANAGED_TAG } from './driver.ts';
import type { AwsRoleAccess, AwsRoleSettings } from './driver.ts';

/** Assume only at issue; the revocation policy edits serve every function that may revoke. */
export const awsRoleAws: AwsDeclaration<AwsRoleSettings, AwsRoleAccess> = {
  needs(target) {
    // The driver refuses an untagged role too; IAM enforces the same tag, so a mistake cannot widen access.
    const managedRole = { StringEquals: { [`aws:ResourceTag/${MANAGED_TAG.key}`]: MANAGED_TAG.value } };
    return {
      statements: [
        {
          sid: 'AssumeManagedTargetRoles',
          actions: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'],
          resources: [target.settings.roleArn],
          conditions: managedRole,
          job: 'issue',
        },
        {
          sid: 'DenySessionsOnManagedTargetRoles',
          actions: ['iam:GetRole', 'iam:GetRolePolicy', 'iam:PutRolePolicy', 'iam:DeleteRolePolicy'],
          resources: [target.settings.roleArn],
          conditions: managedRole,
          job: 'revoke',
        },
      ],
    };
  },
};
