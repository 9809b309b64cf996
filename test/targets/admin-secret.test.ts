import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/lease/errors.ts';
import { adminSecretStatement, deployedSecretRef, splitSecretRef } from '../../shared/targets/admin-secret.ts';

const ENV = { partition: 'aws', region: 'eu-west-1', account: '123456789012', nag: { partition: 'P', region: 'R', account: 'A' } };
const ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:db/admin-AbCdEf';

describe("a target's admin secret in AWS (every kind's aws.ts)", () => {
  it('names the secret itself, without the #field the runtime resolver reads from it', () => {
    expect(splitSecretRef(`${ARN}#password`)).toEqual({ secretId: ARN, field: 'password' });
    expect(adminSecretStatement('ReadX', 'X', `${ARN}#password`, ENV).resources).toEqual([ARN]);
    const byName = adminSecretStatement('ReadX', 'X', 'db/admin#password', ENV);
    expect(byName.resources).toEqual(['arn:aws:secretsmanager:eu-west-1:123456789012:secret:db/admin-??????']);
    expect(Object.keys(byName.wildcardReasons ?? {})).toEqual(['arn:P:secretsmanager:R:A:secret:db/admin-??????']);
    expect(adminSecretStatement('ReadX', 'X', ARN, ENV)).not.toHaveProperty('wildcardReasons');
  });

  it('refuses an inline password, a missing reference and file:/env: ones, naming the field', () => {
    const names = { inline: 'password', ref: 'passwordSecret' };
    expect(() => deployedSecretRef('targets.db.settings', names, 'x', undefined)).toThrow(
      /targets\.db\.settings\.password would be written/,
    );
    expect(() => deployedSecretRef('targets.db.settings', names, undefined, undefined)).toThrow(ConfigError);
    expect(() => deployedSecretRef('targets.db.settings', names, undefined, 'file:/run/pw')).toThrow(/passwordSecret: 'file:' references/);
    expect(deployedSecretRef('targets.db.settings', names, undefined, ARN)).toBe(ARN);
  });
});
