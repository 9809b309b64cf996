import { createHash, randomBytes } from 'node:crypto';
import { TargetError } from '../../../shared/lease/errors.ts';
import type { TargetDriver } from '../../../shared/lease/ports.ts';
import type { DriverFactory } from '../../../shared/targets/driver.ts';
import { KvAccessSchema, KvSettingsSchema } from './settings.ts';
import type { KvAccess, KvSettings } from './settings.ts';

/** A kv-store target: one bearer token per credential, created and deleted with the store's admin token. */
export const kvDriverFactory: DriverFactory<KvSettings, KvAccess, 'resolveSecret'> = {
  kind: 'kv',
  settingsSchema: KvSettingsSchema,
  accessSchema: KvAccessSchema,
  services: ['resolveSecret'],
  create(target, services): TargetDriver {
    const { endpoint, adminTokenSecret, tokenPrefix } = target.settings;
    const resolveSecret = services.resolveSecret;
    if (!resolveSecret) throw new TargetError(`target ${target.name}: needs a secret resolver`, { retryable: false });
    const admin = async (method: string, path: string, body?: unknown) =>
      fetch(new URL(path, endpoint), {
        method,
        headers: { authorization: `Bearer ${await resolveSecret(adminTokenSecret)}`, 'content-type': 'application/json' },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    return {
      kind: 'kv',
      externalId: (taskId, grant) =>
        tokenPrefix +
        createHash('sha256')
          .update(JSON.stringify([taskId, grant.target, grant.access]))
          .digest('hex')
          .slice(0, 24),
      async issue(ctx) {
        const level = target.access[ctx.grant.access];
        if (!level) throw new TargetError(`target ${target.name} has no access ${ctx.grant.access}`, { retryable: false });
        const token = randomBytes(24).toString('base64url');
        const res = await admin('PUT', `/tokens/${ctx.externalId}`, { token, scope: level.scope });
        if (res.status !== 201) throw new TargetError(`kv issue failed: HTTP ${res.status}`);
        return { secret: { endpoint, token }, naturalExpiry: ctx.lease.expiresAt };
      },
      async revoke(ctx) {
        const res = await admin('DELETE', `/tokens/${ctx.externalId}`);
        if (res.status !== 204 && res.status !== 404) throw new TargetError(`kv revoke failed: HTTP ${res.status}`);
      },
      async verify(ctx) {
        if (!ctx.secret?.token) return 'inconclusive';
        const res = await fetch(new URL('/data', endpoint), { headers: { authorization: `Bearer ${ctx.secret.token}` } }).catch(
          () => undefined,
        );
        return res?.status === 401 ? 'rejected' : res?.status === 200 ? 'still-valid' : 'inconclusive';
      },
    };
  },
};
