import * as z from 'zod';
import { ROLE_ARN } from './names.ts';
import { AWS_ROLE_PROBES } from './probes.ts';

/** STS: the shortest session. */
export const STS_MIN_DURATION_SECONDS = 900;
/** STS: plaintext session policy limit. */
export const SESSION_POLICY_MAX_CHARS = 2048;
/** IAM: aggregate inline policy size of a role (whitespace not counted). */
export const INLINE_POLICY_MAX_CHARS = 10_240;

export const AwsRoleProbeSchema = z
  .strictObject({
    action: z.string().min(1),
    /** ssm:GetParameter: the parameter the session reads. */
    parameterName: z
      .string()
      .regex(/^\/?[A-Za-z0-9_.\-/]{1,2048}$/)
      .optional(),
    /** Probe once right after AssumeRole, so a probe the role never allowed cannot fake a proof. */
    checkAtIssue: z.boolean().default(true),
  })
  .superRefine((p, ctx) => {
    if (/^sts:GetCallerIdentity$/i.test(p.action)) {
      ctx.addIssue({
        code: 'custom',
        path: ['action'],
        message:
          'sts:GetCallerIdentity needs no permission and can never be denied, so it cannot prove a revocation; use iam:GetRole or ssm:GetParameter',
      });
      return;
    }
    if (!(p.action in AWS_ROLE_PROBES)) {
      ctx.addIssue({ code: 'custom', path: ['action'], message: `unknown probe (known: ${Object.keys(AWS_ROLE_PROBES).join(', ')})` });
      return;
    }
    if (p.action === 'ssm:GetParameter' && !p.parameterName) {
      ctx.addIssue({ code: 'custom', path: ['parameterName'], message: 'is required for the ssm:GetParameter probe' });
    }
  });
export type AwsRoleProbeSettings = z.output<typeof AwsRoleProbeSchema>;

export const AwsRoleSettingsSchema = z.strictObject({
  roleArn: z.string().regex(ROLE_ARN, { message: 'must be an IAM role ARN such as arn:aws:iam::123456789012:role/tasklease-orders' }),
  /** Region for STS and the probe. Default: AWS_REGION. */
  region: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, { message: 'must be an AWS region such as eu-west-1' })
    .optional(),
  maxSessionSeconds: z.number().int().min(STS_MIN_DURATION_SECONDS).max(43_200).default(3600),
  /** `sts:ExternalId` the role's trust policy requires, if any (not a secret). */
  externalId: z
    .string()
    .regex(/^[\w+=,.@:/-]{2,1224}$/)
    .optional(),
  probe: AwsRoleProbeSchema.prefault({ action: 'iam:GetRole' }),
  /**
   * An upper bound on the revocation policy's size. The broker also subtracts what the role's other
   * inline policies use (IAM's limit is for all of them together), so this need not be lowered for them.
   */
  revocationPolicyMaxChars: z.number().int().min(1024).max(INLINE_POLICY_MAX_CHARS).default(INLINE_POLICY_MAX_CHARS),
});
export type AwsRoleSettings = z.output<typeof AwsRoleSettingsSchema>;
export type AwsRoleSettingsInput = z.input<typeof AwsRoleSettingsSchema>;

const PolicyStatementSchema = z.looseObject({
  Sid: z
    .string()
    .regex(/^[A-Za-z0-9]*$/, { message: 'must be alphanumeric' })
    .optional(),
  Effect: z.enum(['Allow', 'Deny']),
});

export const AwsRoleAccessSchema = z.strictObject({
  /** IAM policy document that narrows the role for this access level. */
  sessionPolicy: z.looseObject({
    Version: z.literal('2012-10-17').default('2012-10-17'),
    Statement: z.array(PolicyStatementSchema).min(1),
  }),
});
export type AwsRoleAccess = z.output<typeof AwsRoleAccessSchema>;
