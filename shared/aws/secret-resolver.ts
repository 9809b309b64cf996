import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfigError, TargetError } from '../lease/errors.ts';
import { describeAwsError, isAwsError } from './errors.ts';
import { splitSecretRef } from '../targets/admin-secret.ts';

export interface SecretResolverOptions {
  /** How long a resolved value is reused. Default 5 minutes (admin secrets rotate rarely). */
  ttlMs?: number;
  now?: () => number;
  /** Told about every value resolved, so the log redactor can scrub it. */
  onValue?: (value: string) => void;
}

/**
 * `DriverDeps.resolveSecret` on Secrets Manager: resolves a target's admin secret reference
 * (`passwordSecret` of a postgres target) with GetSecretValue, cached.
 *
 * Reference forms: a secret name or ARN, optionally followed by `#field`. A JSON secret (such as
 * the RDS-managed master secret `{"username": …, "password": …}`) yields `field`, or `password`
 * when no field is named; any other secret yields its whole string.
 */
export function secretsManagerResolver(
  client: SecretsManagerClient,
  options: SecretResolverOptions = {},
): (ref: string) => Promise<string> {
  const ttlMs = options.ttlMs ?? 5 * 60_000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, { value: Promise<string>; until: number }>();

  const load = async (ref: string): Promise<string> => {
    const { secretId, field } = splitSecretRef(ref);
    let secretString: string | undefined;
    try {
      secretString = (await client.send(new GetSecretValueCommand({ SecretId: secretId }))).SecretString;
    } catch (err) {
      if (isAwsError(err, 'ResourceNotFoundException')) throw new ConfigError(`secret ${secretId} does not exist`);
      throw new TargetError(`cannot read secret ${secretId}: ${describeAwsError(err)}`);
    }
    if (secretString === undefined) throw new ConfigError(`secret ${secretId} has no string value`);
    let value: string | undefined = secretString;
    let parsed: unknown;
    try {
      parsed = JSON.parse(secretString);
    } catch {
      parsed = undefined;
    }
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
      const picked = (parsed as Record<string, unknown>)[field ?? 'password'];
      value = typeof picked === 'string' ? picked : undefined;
      if (value === undefined) throw new ConfigError(`secret ${secretId} has no string field '${field ?? 'password'}'`);
    } else if (field !== undefined) {
      throw new ConfigError(`secret ${secretId} is not a JSON object, so it has no field '${field}'`);
    }
    options.onValue?.(value);
    return value;
  };

  return (ref: string): Promise<string> => {
    const hit = cache.get(ref);
    if (hit && hit.until > now()) return hit.value;
    const value = load(ref);
    cache.set(ref, { value, until: now() + ttlMs });
    // A failure is not cached: the next call tries again.
    value.catch(() => cache.delete(ref));
    return value;
  };
}
