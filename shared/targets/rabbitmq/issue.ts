import { createHash, randomBytes } from 'node:crypto';
import type { IssueContext, IssuedCredential } from '../../lease/ports.ts';
import type { RabbitmqAdmin } from './admin.ts';
import { RabbitmqTargetError } from './errors.ts';
import { seg } from './management.ts';
import { amqpEndpoint } from './settings.ts';
import type { RabbitmqAccess } from './settings.ts';

export const HASHING_ALGORITHM = 'rabbit_password_hashing_sha256';

/**
 * RabbitMQ's salted SHA-256 password hash: base64(salt ‖ sha256(salt ‖ password)), 4-byte salt.
 * Sending the hash instead of the password keeps the plaintext out of the API's request logs.
 */
export function rabbitSha256Hash(password: string, salt: Buffer = randomBytes(4)): string {
  const digest = createHash('sha256')
    .update(Buffer.concat([salt, Buffer.from(password, 'utf8')]))
    .digest();
  return Buffer.concat([salt, digest]).toString('base64');
}

/** The workload's URI: credentials and vhost percent-encoded. */
function amqpUri(tls: boolean, host: string, port: number, user: string, password: string, vhost: string): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return `${tls ? 'amqps' : 'amqp'}://${seg(user)}:${seg(password)}@${h}:${port}/${seg(vhost)}`;
}

/**
 * Creates the task's user (no tags) with a fresh random password sent as a hash, then its
 * permissions in each vhost of the access level. RabbitMQ has no user expiry: the lease's
 * expiresAt and the reaper bound the credential. A user of that name already there (an earlier
 * attempt that crashed before it was recorded) is re-keyed and its permissions reset to the level.
 */
export async function issueUser(
  admin: RabbitmqAdmin,
  access: Readonly<Record<string, RabbitmqAccess>>,
  ctx: IssueContext,
  user: string,
): Promise<IssuedCredential> {
  const level = Object.hasOwn(access, ctx.grant.access) ? access[ctx.grant.access] : undefined;
  if (!level) {
    throw new RabbitmqTargetError(
      `rabbitmq target ${admin.name} has no access named ${JSON.stringify(ctx.grant.access.slice(0, 64))}`,
      undefined,
      false,
    );
  }
  if (!Number.isFinite(ctx.lease.expiresAt)) throw new RabbitmqTargetError('lease expiresAt is not a valid time', undefined, false);
  const password = randomBytes(32).toString('base64url');
  const hash = rabbitSha256Hash(password);
  const secrets = [password, hash];
  const userPath = `/api/users/${seg(user)}`;
  const vhosts = Object.entries(level.vhosts);

  const created = await admin.api.request(
    'issue',
    'PUT',
    userPath,
    [201, 204],
    { password_hash: hash, hashing_algorithm: HASHING_ALGORITHM, tags: '' },
    secrets,
  );
  try {
    if (created.status === 204) {
      // It existed (an attempt that crashed before its record): nothing opened with its old password
      // stays, and its permissions and limit are the level's as it is now.
      await admin.closeConnections(user, await admin.listConnections(user));
      if (level.maxConnections === undefined) {
        await admin.api.request('issue', 'DELETE', `/api/user-limits/${seg(user)}/max-connections`, [204, 404]);
      }
      const { body } = await admin.api.request('issue', 'GET', `${userPath}/permissions`, [200]);
      const stale = (Array.isArray(body) ? (body as Array<{ vhost?: unknown }>) : [])
        .map((p) => p.vhost)
        .filter((v): v is string => typeof v === 'string' && !Object.hasOwn(level.vhosts, v));
      await Promise.all(stale.map((v) => admin.api.request('issue', 'DELETE', `/api/permissions/${seg(v)}/${seg(user)}`, [204, 404])));
    }
    if (level.maxConnections !== undefined) {
      await admin.api.request('issue', 'PUT', `/api/user-limits/${seg(user)}/max-connections`, [201, 204], { value: level.maxConnections });
    }
    await Promise.all(
      vhosts.map(([vhost, p]) =>
        admin.api.request('issue', 'PUT', `/api/permissions/${seg(vhost)}/${seg(user)}`, [201, 204], {
          configure: p.configure,
          write: p.write,
          read: p.read,
        }),
      ),
    );
  } catch (err) {
    // No half-made user left with a live password: best effort, the intent's revoke covers the rest.
    await admin.api.request('issue', 'DELETE', userPath, [204, 404]).catch(() => undefined);
    throw err;
  }

  const { host, port, tls } = amqpEndpoint(admin.settings);
  const vhost = vhosts[0]![0];
  return {
    secret: {
      host,
      port: String(port),
      tls: String(tls),
      vhost,
      username: user,
      password,
      uri: amqpUri(tls, host, port, user, password, vhost),
    },
    // RabbitMQ users do not expire: the lease's expiry (enforced by the reaper) is the bound.
    naturalExpiry: ctx.lease.expiresAt,
  };
}
