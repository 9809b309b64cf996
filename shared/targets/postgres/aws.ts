import { ConfigError } from '../../lease/errors.ts';
import { adminSecretStatement } from '../admin-secret.ts';
import type { AwsDeclaration } from '../kind.ts';
import type { PostgresAccess, PostgresSettings } from './driver.ts';

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
    return {
      statements: [adminSecretStatement('ReadDatabaseAdminSecrets', 'database', target.settings.passwordSecret, env)],
      ...(target.settings.vpc ? { vpc: target.settings.vpc } : {}),
    };
  },
};
