/**
 * The `aws-role` target: one STS session per credential.
 *
 * Issue (issue.ts): `sts:AssumeRole` on the configured role with
 *   - `RoleSessionName` = `tl.<task id, sanitised>.<hash of task+grant>` (≤ 64 chars), which is
 *     also the credential's externalId, so a crash can always be cleaned up;
 *   - `Policy` = the access level's session policy plus one statement allowing the probe action
 *     (session-policy.ts);
 *   - session tags `tasklease:task`, `tasklease:workload`, `tasklease:grant`;
 *   - `SourceIdentity` = `<last path segment>@<trust domain>+<hash of the SPIFFE ID>` (≤ 64);
 *   - `DurationSeconds` = lease duration clamped to [900, min(maxSessionSeconds, role's max)].
 * The role's trust policy must allow the broker `sts:AssumeRole`, `sts:TagSession` and
 * `sts:SetSourceIdentity`. Called from Lambda this is role chaining, which STS caps at 3600 s:
 * keep `maxSessionSeconds` at its default of 3600 there.
 *
 * Revoke (revoke.ts): a Deny for exactly that session in the broker-managed inline policy
 * `tasklease-revocations` (revocation-policy.ts). The broker refuses to touch a role not tagged
 * `tasklease:managed=true` (role.ts). Its budget is what IAM's 10,240 characters for all inline
 * policies of the role leave after the role's other inline policies; when the live denies do not
 * fit (or IAM says LimitExceeded) it becomes one role-wide cutoff, which also revokes the role's
 * other live tasklease sessions.
 *
 * A session STS refused (an error response) was never issued: its rollback needs no deny and
 * verifies as rejected. After a timeout or 5xx a session may exist; without its credentials it
 * stays inconclusive and the ledger keeps it open (the deny covers any session of that name).
 *
 * Verify (verify.ts): the configured probe call made with the old session credentials
 * (probes.ts). AccessDenied (or an expired/unknown token) = rejected; success, or an error that
 * only an authorised caller can get (NoSuchEntity) = still-valid; anything else = inconclusive.
 * The probe must be an action IAM policies govern — `sts:GetCallerIdentity` needs no permission
 * and can never be denied, so it proves nothing and is refused. Probes:
 *   - `iam:GetRole` on the target role itself (default): read-only, needs no extra resource;
 *     IAM's control-plane rate limits apply, so very high revocation rates want another probe.
 *   - `ssm:GetParameter` on a configured parameter name: higher rate limits.
 * The role's identity policy must allow the probe action; `checkAtIssue` proves that once per
 * session (a probe that is always denied would "prove" every revocation instantly). Adding a
 * probe is one entry in AWS_ROLE_PROBES.
 */
import { IAMClient } from '@aws-sdk/client-iam';
import { STSClient } from '@aws-sdk/client-sts';
import type { Grant } from '../../events/schemas.ts';
import { ConfigError } from '../../lease/errors.ts';
import type { IssueContext, IssuedCredential, RevokeContext, TargetDriver, VerifyContext, VerifyResult } from '../../lease/ports.ts';
import type { DriverFactory, DriverServices } from '../driver.ts';
import { assumeSession } from './issue.ts';
import { AWS_ROLE_KIND, ROLE_ARN, sessionNameFor } from './names.ts';
import { AWS_ROLE_PROBES } from './probes.ts';
import type { AwsRoleProbe } from './probes.ts';
import { PolicyEditQueue, revokeSession } from './revoke.ts';
import type { AwsRoleClients, AwsRoleTarget } from './role.ts';
import { sessionPoliciesFor } from './session-policy.ts';
import { AwsRoleAccessSchema, AwsRoleSettingsSchema } from './settings.ts';
import type { AwsRoleAccess, AwsRoleSettings } from './settings.ts';
import { verifySession } from './verify.ts';

// The names other modules import from this path (infra, functions' tests); their homes are beside it.
export { AWS_ROLE_KIND, MANAGED_TAG, PROBE_STATEMENT_SID, REVOCATION_POLICY_NAME, sessionNameFor, sourceIdentityFor } from './names.ts';
export { AWS_ROLE_PROBES } from './probes.ts';
export type { AwsCredentialIdentity, AwsRoleProbe, ProbeTarget } from './probes.ts';
export { addSessionDeny, parsePolicyDocument, policySize, RevocationBudgetError } from './revocation-policy.ts';
export type { PolicyDocument, PolicyStatement, RevocationChange, RevocationOptions } from './revocation-policy.ts';
export type { AwsRoleClients } from './role.ts';
export {
  AwsRoleAccessSchema,
  AwsRoleProbeSchema,
  AwsRoleSettingsSchema,
  INLINE_POLICY_MAX_CHARS,
  SESSION_POLICY_MAX_CHARS,
  STS_MIN_DURATION_SECONDS,
} from './settings.ts';
export type { AwsRoleAccess, AwsRoleProbeSettings, AwsRoleSettings, AwsRoleSettingsInput } from './settings.ts';

/** The services an aws-role driver reads: SDK clients built the runtime's way, and the shared lock for policy edits. */
export type AwsRoleServices = Pick<DriverServices, 'awsClient' | 'lock'>;

export class AwsRoleDriver implements TargetDriver, AwsRoleTarget {
  readonly kind = AWS_ROLE_KIND;
  readonly roleName: string;
  readonly region: string;
  readonly probe: AwsRoleProbe;
  readonly refused = new Set<string>();
  readonly now: () => number;
  private readonly sessionPolicies: Map<string, string>;
  private readonly edits: PolicyEditQueue;

  constructor(
    readonly name: string,
    readonly settings: AwsRoleSettings,
    access: Record<string, AwsRoleAccess>,
    readonly clients: AwsRoleClients,
    options: { now?: () => number; lock?: DriverServices['lock'] } = {},
  ) {
    const m = ROLE_ARN.exec(settings.roleArn);
    if (!m) throw new ConfigError(`target ${name}: settings.roleArn: not an IAM role ARN`);
    const [, partition = 'aws', account = '', roleName = ''] = m;
    this.roleName = roleName;
    this.now = options.now ?? Date.now;
    const region = (this.region = settings.region ?? process.env.AWS_REGION ?? 'us-east-1');
    const factory = AWS_ROLE_PROBES[settings.probe.action];
    if (!factory) throw new ConfigError(`target ${name}: settings.probe.action: unknown probe ${settings.probe.action}`);
    this.probe = factory(settings.probe, { partition, account, region, roleArn: settings.roleArn, roleName });
    this.sessionPolicies = sessionPoliciesFor(name, access, this.probe);
    this.edits = new PolicyEditQueue(settings.roleArn, options.lock);
  }

  externalId(taskId: string, grant: Grant): string {
    return sessionNameFor(taskId, grant);
  }

  async issue(ctx: IssueContext): Promise<IssuedCredential> {
    return assumeSession(this, this.sessionPolicies, ctx, (revoke) => this.revoke(revoke));
  }

  async revoke(ctx: RevokeContext): Promise<void> {
    // A role-wide cutoff (the budget's fallback) also ends the role's other live tasklease
    // sessions; the core has no port to hear of them, so their leases stay open until their own
    // end, whose revoke finds them covered and whose verify proves them rejected.
    await revokeSession(this, this.edits, ctx);
  }

  async verify(ctx: VerifyContext): Promise<VerifyResult> {
    return verifySession(this, ctx);
  }
}

export const awsRoleDriverFactory: DriverFactory<AwsRoleSettings, AwsRoleAccess, 'awsClient' | 'lock'> = {
  kind: AWS_ROLE_KIND,
  settingsSchema: AwsRoleSettingsSchema,
  accessSchema: AwsRoleAccessSchema,
  services: ['awsClient', 'lock'],
  create(target, services) {
    const { region } = target.settings;
    const make = <C>(Client: new (config: { region?: string }) => C): C =>
      services.awsClient ? services.awsClient(Client, region) : new Client(region ? { region } : {});
    return new AwsRoleDriver(
      target.name,
      target.settings,
      target.access,
      { sts: make(STSClient), iam: make(IAMClient) },
      { lock: services.lock },
    );
  },
};
