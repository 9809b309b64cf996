import { ConfigError } from '../../lease/errors.ts';
import type { AwsDeclaration, AwsEnvironment } from '../kind.ts';
import type { RedisAccess, RedisSettings } from './settings.ts';

/** The admin secret as an IAM resource: `#field` dropped; a name or partial ARN matches only its 6-character suffix. */
function secretResource(ref: string, env: AwsEnvironment): { arn: string; nagForm: string } {
  const hash = ref.lastIndexOf('#');
  const id = hash > 0 ? ref.slice(0, hash) : ref;
  if (id.startsWith('arn:')) {
    const arn = /-[A-Za-z0-9]{6}$/.test(id) ? id : `${id}-??????`;
    return { arn, nagForm: arn };
  }
  const suffix = `secret:${id}-??????`;
  return {
    arn: `arn:${env.partition}:secretsmanager:${env.region}:${env.account}:${suffix}`,
    nagForm: `arn:${env.nag.partition}:secretsmanager:${env.nag.region}:${env.nag.account}:${suffix}`,
  };
}

/**
 * In AWS every function may revoke (reaper, re-verify), so all of them read the admin secret and
 * reach the server: secretsmanager:GetSecretValue on that one secret, and the VPC when configured.
 * An inline password or a file:/env: reference cannot work there, and is refused naming the field.
 * Plain TCP works but sends every AUTH in clear across the VPC: a warning.
 */
export const redisAws: AwsDeclaration<RedisSettings, RedisAccess> = {
  needs(target, env) {
    const field = `targets.${target.name}.settings`;
    if (target.settings.password !== undefined) {
      // The config travels in a Lambda environment variable and the CloudFormation template.
      throw new ConfigError(
        `${field}.password would be written into the CloudFormation template and the functions' environment; use ${field}.passwordSecret (a Secrets Manager ARN) in AWS`,
      );
    }
    const ref = target.settings.passwordSecret;
    if (ref === undefined)
      throw new ConfigError(`${field}.passwordSecret is required in AWS (a Secrets Manager ARN of the admin password)`);
    if (ref.startsWith('file:') || ref.startsWith('env:')) {
      throw new ConfigError(
        `${field}.passwordSecret: '${ref.slice(0, ref.indexOf(':') + 1)}' references work only outside AWS; use a Secrets Manager ARN`,
      );
    }
    const secret = secretResource(ref, env);
    const warnings: string[] = [];
    if (!target.settings.tls) warnings.push(`${field}.tls is false: the admin's and every task's AUTH cross the network in clear`);
    return {
      statements: [
        {
          sid: 'ReadRedisAdminSecrets',
          actions: ['secretsmanager:GetSecretValue'],
          resources: [secret.arn],
          job: 'any',
          ...(secret.arn.endsWith('-??????')
            ? {
                wildcardReasons: {
                  [secret.nagForm]:
                    'The Redis admin secret is configured by name or partial ARN; -?????? matches only the 6-character suffix Secrets Manager appends to that one name.',
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
