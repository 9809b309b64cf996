import { GetRoleCommand } from '@aws-sdk/client-iam';
import type { IAMClient, Role } from '@aws-sdk/client-iam';
import type { STSClient } from '@aws-sdk/client-sts';
import { describeAwsError, isAwsError } from '../../aws/errors.ts';
import { TargetError } from '../../lease/errors.ts';
import type { RevokeContext } from '../../lease/ports.ts';
import { MANAGED_TAG } from './names.ts';
import type { AwsRoleProbe } from './probes.ts';
import type { AwsRoleSettings } from './settings.ts';

export interface AwsRoleClients {
  sts: STSClient;
  iam: IAMClient;
}

/** What the job modules (issue.ts, revoke.ts, verify.ts) use of an aws-role target; the driver implements it. */
export interface AwsRoleTarget {
  /** The configured target name. */
  readonly name: string;
  readonly settings: AwsRoleSettings;
  /** The role's name, from its ARN. */
  readonly roleName: string;
  /** STS's and the probe's region. */
  readonly region: string;
  readonly clients: AwsRoleClients;
  readonly probe: AwsRoleProbe;
  /**
   * Sessions STS answered with an error response (so it issued nothing), remembered in this
   * process so the rollback that follows can tell "never issued" from "issued, unproven".
   * After a timeout or a 5xx a session may exist: those are not remembered.
   */
  readonly refused: Set<string>;
  now(): number;
}

/** A session's expiry: the recorded natural expiry, else the one STS returned (metadata). */
export function sessionExpiry(ctx: RevokeContext): number | undefined {
  return ctx.naturalExpiry ?? (ctx.metadata?.expiration ? Date.parse(ctx.metadata.expiration) : undefined);
}

/** GetRole, refusing a role without the managed tag; undefined when the role does not exist. */
export async function managedRole(t: AwsRoleTarget, purpose: 'assume' | 'revoke'): Promise<Role | undefined> {
  let role: Role | undefined;
  try {
    role = (await t.clients.iam.send(new GetRoleCommand({ RoleName: t.roleName }))).Role;
  } catch (err) {
    if (isAwsError(err, 'NoSuchEntityException', 'NoSuchEntity')) return undefined;
    throw iamError(t, 'GetRole', err);
  }
  const managed = role?.Tags?.some((tag) => tag.Key === MANAGED_TAG.key && tag.Value === MANAGED_TAG.value);
  if (!role || !managed) {
    throw new TargetError(
      `role ${t.settings.roleArn} is not tagged ${MANAGED_TAG.key}=${MANAGED_TAG.value}; tasklease will not ${purpose === 'assume' ? 'assume it' : 'edit its policies'}`,
      { retryable: false },
    );
  }
  return role;
}

export function iamError(t: AwsRoleTarget, op: string, err: unknown): TargetError {
  return new TargetError(`iam ${op} ${t.roleName} failed: ${describeAwsError(err)}`, {
    retryable: !isAwsError(err, 'AccessDenied', 'MalformedPolicyDocumentException', 'LimitExceededException'),
  });
}
