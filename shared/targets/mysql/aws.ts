import { adminSecretStatement, deployedSecretRef } from '../admin-secret.ts';
import type { AwsDeclaration } from '../kind.ts';
import type { MysqlAccess, MysqlSettings } from './settings.ts';

/**
 * In AWS every function may revoke (reaper, re-verify), so all of them read the admin secret and
 * reach the server: secretsmanager:GetSecretValue on that one secret, and the VPC when configured.
 * An inline password or a file:/env: reference cannot work there, and is refused naming the field.
 */
export const mysqlAws: AwsDeclaration<MysqlSettings, MysqlAccess> = {
  needs(target, env) {
    const field = `targets.${target.name}.settings`;
    const ref = deployedSecretRef(
      field,
      { inline: 'password', ref: 'passwordSecret' },
      target.settings.password,
      target.settings.passwordSecret,
    );
    return {
      statements: [adminSecretStatement('ReadMysqlAdminSecrets', 'MySQL', ref, env)],
      ...(target.settings.vpc ? { vpc: target.settings.vpc } : {}),
    };
  },
};
