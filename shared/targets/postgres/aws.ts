import { ConfigError } from '../../lease/errors.ts';
import type { AwsDeclaration, AwsEnvironment } from '../kind.ts';
import type { PostgresAccess, PostgresSettings } from './driver.ts';

/** The admin secret as an IAM resource: a name or a partial ARN matches only its 6-character suffix. */
function secretResource(ref: string, env: AwsEnvironment): { arn: string; nagForm: string } {
  if (ref.startsWith('arn:')) {
    const arn = /-[A-Za-z0-9]{6}$/.test(ref) ? ref : `${ref}-??????`;
    return { arn, nagForm: arn };
  }
  const suffix = `secret:${ref}-??????`;
  return {
    arn: `arn:${env.partition}:secretsmanager:${env.region}:${env.account}:${suffix}`,
    nagForm: `arn:${env.nag.partition}:secretsmanager:${env.nag.region}:${env.nag.account}:${suffix}`,
  };
}

/** In AWS every function may revoke (reaper, re-verify), so all of them read the admin secret and reach the database. */
export const postgresAws: AwsDeclaration<PostgresSettings, PostgresAccess> = {
  needs(target, env) {
    if (target.settings.password !== undefined) {
      // The config travels in a Lambda environment variable and the CloudFormation template.
      throw new ConfigError(
        `targets ${target.name}: settings.password would be written into the CloudFormation template and the functions' environment; use settings.passwordSecret (a Secrets Manager ARN) in AWS`,
      );
    }
    // The settings schema already wants exactly one of the two; needs() is also called on its own.
    if (target.settings.passwordSecret === undefined) {
      throw new ConfigError(
        `targets.${target.name}.settings.passwordSecret is required in AWS (a Secrets Manager ARN of the admin password)`,
      );
    }
    const secret = secretResource(target.settings.passwordSecret, env);
    return {
      statements: [
        {
          sid: 'ReadDatabaseAdminSecrets',
          actions: ['secretsmanager:GetSecretValue'],
          resources: [secret.arn],
          job: 'any',
          ...(secret.arn.endsWith('-??????')
            ? {
                wildcardReasons: {
                  [secret.nagForm]:
                    'The database admin secret is configured by name or partial ARN; -?????? matches only the 6-character suffix Secrets Manager appends to that one name.',
                },
              }
            : {}),
        },
      ],
      ...(target.settings.vpc ? { vpc: target.settings.vpc } : {}),
    };
  },
};
