import { adminSecretStatement, deployedSecretRef } from '../admin-secret.ts';
import type { AwsDeclaration } from '../kind.ts';
import type { RedisAccess, RedisSettings } from './settings.ts';

/**
 * In AWS every function may revoke (reaper, re-verify), so all of them read the admin secret and
 * reach the server: secretsmanager:GetSecretValue on that one secret, and the VPC when configured.
 * An inline password or a file:/env: reference cannot work there, and is refused naming the field.
 * Plain TCP works but sends every AUTH in clear across the VPC: a warning.
 */
export const redisAws: AwsDeclaration<RedisSettings, RedisAccess> = {
  needs(target, env) {
    const field = `targets.${target.name}.settings`;
    const ref = deployedSecretRef(
      field,
      { inline: 'password', ref: 'passwordSecret' },
      target.settings.password,
      target.settings.passwordSecret,
    );
    const warnings: string[] = [];
    if (!target.settings.tls) warnings.push(`${field}.tls is false: the admin's and every task's AUTH cross the network in clear`);
    return {
      statements: [adminSecretStatement('ReadRedisAdminSecrets', 'Redis', ref, env)],
      ...(target.settings.vpc ? { vpc: target.settings.vpc } : {}),
      ...(warnings.length ? { warnings } : {}),
    };
  },
};
