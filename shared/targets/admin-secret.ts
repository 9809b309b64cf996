import { ConfigError } from '../lease/errors.ts';
import type { AwsEnvironment, IamStatementSpec } from './kind.ts';

/*
 * A target's admin credential in AWS: a Secrets Manager reference (a name or ARN, optionally
 * `#field` of a JSON secret), read by every function (any of them may revoke). One place for how
 * the reference is split, refused and turned into the one IAM statement a kind declares.
 */

/** The secret and, after the last `#`, the field of a JSON secret (shared/aws/secret-resolver.ts reads it so). */
export function splitSecretRef(ref: string): { secretId: string; field?: string } {
  const hash = ref.lastIndexOf('#');
  return hash > 0 ? { secretId: ref.slice(0, hash), field: ref.slice(hash + 1) } : { secretId: ref };
}

/**
 * The reference a deployed target must use, refusing naming the field: an inline password (it would
 * be written into the template and the functions' environment), none, or a `file:`/`env:` one.
 */
export function deployedSecretRef(
  settingsField: string,
  names: { inline: string; ref: string },
  inline: unknown,
  ref: string | undefined,
): string {
  if (inline !== undefined) {
    throw new ConfigError(
      `${settingsField}.${names.inline} would be written into the CloudFormation template and the functions' environment; use ${settingsField}.${names.ref} (a Secrets Manager ARN) in AWS`,
    );
  }
  if (ref === undefined)
    throw new ConfigError(`${settingsField}.${names.ref} is required in AWS (a Secrets Manager ARN of the admin password)`);
  if (ref.startsWith('file:') || ref.startsWith('env:')) {
    throw new ConfigError(
      `${settingsField}.${names.ref}: '${ref.slice(0, ref.indexOf(':') + 1)}' references work only outside AWS; use a Secrets Manager ARN`,
    );
  }
  return ref;
}

/** secretsmanager:GetSecretValue on that one secret, for every job; a name or partial ARN matches only its 6-character suffix. */
export function adminSecretStatement(sid: string, what: string, ref: string, env: AwsEnvironment): IamStatementSpec {
  const { secretId } = splitSecretRef(ref);
  let arn: string;
  let nagForm: string;
  if (secretId.startsWith('arn:')) {
    arn = nagForm = /-[A-Za-z0-9]{6}$/.test(secretId) ? secretId : `${secretId}-??????`;
  } else {
    const suffix = `secret:${secretId}-??????`;
    arn = `arn:${env.partition}:secretsmanager:${env.region}:${env.account}:${suffix}`;
    nagForm = `arn:${env.nag.partition}:secretsmanager:${env.nag.region}:${env.nag.account}:${suffix}`;
  }
  return {
    sid,
    actions: ['secretsmanager:GetSecretValue'],
    resources: [arn],
    job: 'any',
    ...(arn.endsWith('-??????')
      ? {
          wildcardReasons: {
            [nagForm]: `The ${what} admin secret is configured by name or partial ARN; -?????? matches only the 6-character suffix Secrets Manager appends to that one name.`,
          },
        }
      : {}),
  };
}
