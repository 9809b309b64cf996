import { AssumeRoleCommand } from '@aws-sdk/client-sts';
import { awsHttpStatus, describeAwsError, isAwsError } from '../../aws/errors.ts';
import { credentialTags } from '../../aws/tags.ts';
import { TargetError } from '../../lease/errors.ts';
import type { IssueContext, IssuedCredential, RevokeContext } from '../../lease/ports.ts';
import { sourceIdentityFor } from './names.ts';
import { runProbe } from './probes.ts';
import type { AwsCredentialIdentity } from './probes.ts';
import { managedRole } from './role.ts';
import type { AwsRoleTarget } from './role.ts';
import { STS_MIN_DURATION_SECONDS } from './settings.ts';

/** How many refused session names a process remembers (oldest forgotten first). */
const REFUSED_MAX = 1000;

/**
 * `sts:AssumeRole` on the target role, named by the credential's externalId, narrowed by the
 * access level's session policy, tagged with the task, and as long as the lease (clamped to what
 * STS and the role allow). With `probe.checkAtIssue`, a fresh session whose probe is denied is
 * revoked at once and refused: its revocation could never be proven.
 */
export async function assumeSession(
  t: AwsRoleTarget,
  sessionPolicies: ReadonlyMap<string, string>,
  ctx: IssueContext,
  revoke: (ctx: RevokeContext) => Promise<void>,
): Promise<IssuedCredential> {
  const { settings } = t;
  const policy = sessionPolicies.get(ctx.grant.access);
  if (!policy) throw new TargetError(`target ${t.name} has no access level ${ctx.grant.access}`, { retryable: false });
  const role = await managedRole(t, 'assume');
  if (!role) throw new TargetError(`role ${settings.roleArn} does not exist`, { retryable: false });
  const maxSeconds = Math.min(settings.maxSessionSeconds, role.MaxSessionDuration ?? 3600);
  const duration = Math.min(Math.max(Math.ceil(ctx.lease.durationSeconds), STS_MIN_DURATION_SECONDS), maxSeconds);

  let out;
  try {
    out = await t.clients.sts.send(
      new AssumeRoleCommand({
        RoleArn: settings.roleArn,
        RoleSessionName: ctx.externalId,
        Policy: policy,
        DurationSeconds: duration,
        SourceIdentity: sourceIdentityFor(ctx.lease.workload),
        Tags: credentialTags(ctx.lease.taskId, ctx.lease.workload, ctx.grant),
        ...(settings.externalId ? { ExternalId: settings.externalId } : {}),
      }),
    );
  } catch (err) {
    const status = awsHttpStatus(err);
    if (status !== undefined && status >= 400 && status < 500) remember(t.refused, ctx.externalId);
    const permanent = isAwsError(
      err,
      'AccessDenied',
      'MalformedPolicyDocument',
      'PackedPolicyTooLarge',
      'RegionDisabled',
      'ValidationError',
    );
    throw new TargetError(`sts AssumeRole ${settings.roleArn} failed: ${describeAwsError(err)}`, { retryable: !permanent });
  }
  t.refused.delete(ctx.externalId);
  const c = out.Credentials;
  if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) {
    throw new TargetError(`sts AssumeRole ${settings.roleArn} returned no credentials`);
  }
  const credentials: AwsCredentialIdentity = {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretAccessKey,
    sessionToken: c.SessionToken,
  };
  if (settings.probe.checkAtIssue && (await runProbe(t.probe, credentials)) === 'rejected') {
    // The revocation proof would be meaningless. Deny the session now; the core rolls back.
    await revoke({ taskId: ctx.lease.taskId, grant: ctx.grant, externalId: ctx.externalId, naturalExpiry: c.Expiration.getTime() });
    throw new TargetError(
      `probe ${t.probe.action} on ${t.probe.resource} is denied for a fresh session of ${settings.roleArn}; ` +
        `allow it in the role's policy, or revocation could not be proven`,
      { retryable: false },
    );
  }
  const expiration = c.Expiration.toISOString();
  return {
    secret: {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      sessionToken: c.SessionToken,
      expiration,
      roleArn: settings.roleArn,
      region: t.region,
    },
    naturalExpiry: c.Expiration.getTime(),
    metadata: {
      roleId: role.RoleId ?? '',
      sessionName: ctx.externalId,
      assumedRoleArn: out.AssumedRoleUser?.Arn ?? '',
      expiration,
      // By STS's own clock (it sets Expiration = issue + DurationSeconds): a later revoke can tell
      // that a role-wide cutoff (revocation-policy.ts) already denies this session.
      issuedAt: new Date(c.Expiration.getTime() - duration * 1000).toISOString(),
    },
  };
}

function remember(set: Set<string>, value: string): void {
  set.add(value);
  if (set.size > REFUSED_MAX) set.delete(set.values().next().value as string);
}
