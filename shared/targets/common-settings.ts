import { readFile } from 'node:fs/promises';
import * as z from 'zod';
import { ConfigError } from '../lease/errors.ts';

/* Settings parts several kinds share: where the functions run in AWS, and a secret reference. */

/** Where the functions that reach a target run in AWS; read by the CDK stack, not the driver. */
export const VpcSettingsSchema = z.strictObject({
  vpcId: z.string().regex(/^vpc-[0-9a-f]+$/, { error: 'must be a VPC id (vpc-…)' }),
  subnetIds: z.array(z.string().regex(/^subnet-[0-9a-f]+$/, { error: 'must be a subnet id (subnet-…)' })).min(1),
  securityGroupIds: z.array(z.string().regex(/^sg-[0-9a-f]+$/, { error: 'must be a security group id (sg-…)' })).min(1),
});

/**
 * A secret reference's value: `file:` and `env:` here (outside AWS), anything else through the
 * runtime's resolver. `field` names the setting in errors, which never quote what was read.
 */
export async function resolveSecretRef(
  field: string,
  ref: string | undefined,
  resolveSecret: ((ref: string) => Promise<string>) | undefined,
): Promise<string> {
  if (ref === undefined) throw new ConfigError(`${field} is required`);
  if (ref.startsWith('file:')) {
    const text = await readFile(ref.slice('file:'.length), 'utf8').catch(() => {
      // The path is config, not secret; the error's own text could quote file content: not used.
      throw new ConfigError(`${field}: cannot read ${ref.slice(0, 300)}`);
    });
    return text.replace(/\r?\n$/, '');
  }
  if (ref.startsWith('env:')) {
    const value = process.env[ref.slice('env:'.length)];
    if (value === undefined || value === '') throw new ConfigError(`${field}: ${ref} is not set`);
    return value;
  }
  if (!resolveSecret) throw new ConfigError(`${field} needs a runtime with a secret resolver`);
  return resolveSecret(ref);
}
