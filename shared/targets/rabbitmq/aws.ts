import { ConfigError } from '../../lease/errors.ts';
import type { AwsDeclaration, AwsEnvironment } from '../kind.ts';
import type { RabbitmqAccess, RabbitmqSettings } from './settings.ts';

/** The admin secret as an IAM resource: a name or partial ARN matches only its 6-character suffix. */
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

/**
 * In AWS every function may revoke (reaper, re-verify), so all of them read the admin secret and
 * reach the broker: secretsmanager:GetSecretValue on that one secret, and the VPC when configured.
 * An inline password or a file:/env: reference cannot work there and is refused naming the field;
 * plain http or amqp work but send passwords in clear, so they are warnings.
 */
export const rabbitmqAws: AwsDeclaration<RabbitmqSettings, RabbitmqAccess> = {
  needs(target, env) {
    const field = `targets.${target.name}.settings`;
    if (target.settings.adminPassword !== undefined) {
      // The config travels in a Lambda environment variable and the CloudFormation template.
      throw new ConfigError(
        `${field}.adminPassword would be written into the CloudFormation template and the functions' environment; use ${field}.adminPasswordSecret (a Secrets Manager ARN) in AWS`,
      );
    }
    const ref = target.settings.adminPasswordSecret;
    if (ref === undefined)
      throw new ConfigError(`${field}.adminPasswordSecret is required in AWS (a Secrets Manager ARN of the admin password)`);
    if (ref.startsWith('file:') || ref.startsWith('env:')) {
      throw new ConfigError(
        `${field}.adminPasswordSecret: '${ref.slice(0, ref.indexOf(':') + 1)}' references work only outside AWS; use a Secrets Manager ARN`,
      );
    }
    const warnings: string[] = [];
    if (target.settings.managementUrl.startsWith('http:')) {
      warnings.push(`${field}.managementUrl uses http://: the admin password crosses the network in clear; use https://`);
    }
    if (target.settings.amqpUrl.startsWith('amqp:')) {
      warnings.push(`${field}.amqpUrl uses amqp://: task passwords cross the network in clear; use amqps://`);
    }
    const secret = secretResource(ref, env);
    return {
      statements: [
        {
          sid: 'ReadRabbitmqAdminSecrets',
          actions: ['secretsmanager:GetSecretValue'],
          resources: [secret.arn],
          job: 'any',
          ...(secret.arn.endsWith('-??????')
            ? {
                wildcardReasons: {
                  [secret.nagForm]:
                    'The RabbitMQ admin secret is configured by name or partial ARN; -?????? matches only the 6-character suffix Secrets Manager appends to that one name.',
                },
              }
            : {}),
        },
      ],
      ...(target.settings.vpc ? { vpc: target.settings.vpc } : {}),
      ...(warnings.length ? { warnings } : {}),
    };
  },
};
