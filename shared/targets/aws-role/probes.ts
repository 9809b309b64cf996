import { GetRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { isAwsError } from '../../aws/errors.ts';
import type { VerifyResult } from '../../lease/ports.ts';
import type { AwsRoleProbeSettings } from './settings.ts';

/** Static session credentials, as the SDK clients accept them. */
export interface AwsCredentialIdentity {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

export interface ProbeTarget {
  partition: string;
  account: string;
  region: string;
  roleArn: string;
  roleName: string;
}

export interface AwsRoleProbe {
  /** The IAM action performed; allowed in every session policy the driver writes. */
  readonly action: string;
  /** The ARN it is performed on. */
  readonly resource: string;
  /** Resolves when AWS authorised the call, rejects with the SDK error otherwise. */
  call(credentials: AwsCredentialIdentity): Promise<void>;
  /** Errors only an authorised caller can get (the credential still works). */
  readonly authorisedErrors: readonly string[];
}

export type ProbeFactory = (settings: AwsRoleProbeSettings, target: ProbeTarget) => AwsRoleProbe;

/** The probe calls; each is performed with the session's own credentials, one attempt. */
export const AWS_ROLE_PROBES: Record<string, ProbeFactory> = {
  'iam:GetRole': (_settings, t) => ({
    action: 'iam:GetRole',
    resource: t.roleArn,
    authorisedErrors: ['NoSuchEntityException'],
    async call(credentials) {
      const client = new IAMClient({ region: t.region, credentials, maxAttempts: 1 });
      try {
        await client.send(new GetRoleCommand({ RoleName: t.roleName }));
      } finally {
        client.destroy();
      }
    },
  }),
  'ssm:GetParameter': (settings, t) => {
    const name = settings.parameterName as string;
    return {
      action: 'ssm:GetParameter',
      resource: `arn:${t.partition}:ssm:${t.region}:${t.account}:parameter${name.startsWith('/') ? name : `/${name}`}`,
      authorisedErrors: ['ParameterNotFound'],
      async call(credentials) {
        // Loaded on first use: only deployments with this probe carry the SSM client's weight at run time.
        const { GetParameterCommand, SSMClient } = await import('@aws-sdk/client-ssm');
        const client = new SSMClient({ region: t.region, credentials, maxAttempts: 1 });
        try {
          await client.send(new GetParameterCommand({ Name: name }));
        } finally {
          client.destroy();
        }
      },
    };
  },
};

/** Errors that mean AWS refused the credential itself or its permission: the revocation holds. */
const REJECTED_ERRORS = [
  'AccessDenied',
  'AccessDeniedException',
  'ExpiredToken',
  'ExpiredTokenException',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
];

/** One probe call with a session's credentials, read as a verification result. */
export async function runProbe(probe: AwsRoleProbe, credentials: AwsCredentialIdentity): Promise<VerifyResult> {
  try {
    await probe.call(credentials);
    return 'still-valid';
  } catch (err) {
    if (isAwsError(err, ...REJECTED_ERRORS)) return 'rejected';
    if (isAwsError(err, ...probe.authorisedErrors)) return 'still-valid';
    return 'inconclusive';
  }
}
