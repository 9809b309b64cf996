import { adminSecretStatement, deployedSecretRef } from '../admin-secret.ts';
import type { AwsDeclaration } from '../kind.ts';
import type { RabbitmqAccess, RabbitmqSettings } from './settings.ts';

/**
 * In AWS every function may revoke (reaper, re-verify), so all of them read the admin secret and
 * reach the broker: secretsmanager:GetSecretValue on that one secret, and the VPC when configured.
 * An inline password or a file:/env: reference cannot work there and is refused naming the field;
 * plain http or amqp work but send passwords in clear, so they are warnings.
 */
export const rabbitmqAws: AwsDeclaration<RabbitmqSettings, RabbitmqAccess> = {
  needs(target, env) {
    const field = `targets.${target.name}.settings`;
    const ref = deployedSecretRef(
      field,
      { inline: 'adminPassword', ref: 'adminPasswordSecret' },
      target.settings.adminPassword,
      target.settings.adminPasswordSecret,
    );
    const warnings: string[] = [];
    if (target.settings.managementUrl.startsWith('http:')) {
      warnings.push(`${field}.managementUrl uses http://: the admin password crosses the network in clear; use https://`);
    }
    if (target.settings.amqpUrl.startsWith('amqp:')) {
      warnings.push(`${field}.amqpUrl uses amqp://: task passwords cross the network in clear; use amqps://`);
    }
    return {
      statements: [adminSecretStatement('ReadRabbitmqAdminSecrets', 'RabbitMQ', ref, env)],
      ...(target.settings.vpc ? { vpc: target.settings.vpc } : {}),
      ...(warnings.length ? { warnings } : {}),
    };
  },
};
