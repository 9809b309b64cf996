import type amqp from 'amqplib';
import type { VerifyContext, VerifyResult } from '../../lease/ports.ts';
import type { RabbitmqAdmin } from './admin.ts';
import { seg } from './management.ts';
import { amqpEndpoint } from './settings.ts';

/**
 * Proves the user's credential is dead: an AMQP login with the old password is refused
 * (ACCESS_REFUSED, 403) and then — after the login attempt, so a login that passed its check
 * just before the delete has had time to register — the broker tracks no connection of the user.
 * Without the password, the user itself must be gone.
 */
export async function verifyUser(admin: RabbitmqAdmin, ctx: VerifyContext, user: string): Promise<VerifyResult> {
  const password = ctx.secret?.password;
  try {
    if (password) {
      const login = await admin.tryLogin(ctx.secret ?? {}, user, password);
      if (login !== 'refused') return login;
    } else {
      const { status } = await admin.api.request('verify', 'GET', `/api/users/${seg(user)}`, [200, 404]);
      if (status === 200) return 'still-valid';
    }
    const open = await admin.listConnections(user);
    return open.length > 0 ? 'still-valid' : 'rejected';
  } catch {
    return 'inconclusive';
  }
}

/** Refused means the broker rejected the credentials themselves; a vhost refusal (530) means they were accepted. */
export async function tryLogin(
  admin: RabbitmqAdmin,
  secret: Record<string, string>,
  user: string,
  password: string,
): Promise<'refused' | 'still-valid' | 'inconclusive'> {
  const { host, port, tls } = amqpEndpoint(admin.settings);
  const vhost = secret.vhost ?? '/';
  let conn: amqp.ChannelModel;
  try {
    // amqplib loaded on first use: bundles of configs without a rabbitmq target leave it out (infra/bundling.ts).
    const loaded = (await import('amqplib')) as typeof amqp & { default?: typeof amqp };
    conn = await (loaded.default ?? loaded).connect(
      { protocol: tls ? 'amqps' : 'amqp', hostname: host, port, username: user, password, vhost, heartbeat: 0 },
      {
        timeout: admin.settings.connectTimeoutMs,
        clientProperties: { connection_name: 'tasklease-verify' },
        ...(tls ? { servername: host } : {}),
      },
    );
  } catch (err) {
    const message = err instanceof Error ? err.message : '';
    if (/\b403\b|ACCESS[-_]REFUSED/.test(message)) return 'refused';
    // The credentials passed and the vhost was refused (530; amqplib reports the close instead of the open-ok).
    if (/\b530\b|NOT[-_]ALLOWED|Expected ConnectionOpenOk/.test(message)) return 'still-valid';
    return 'inconclusive';
  }
  // The old password still works: a live credential. Close what we opened.
  conn.on('error', () => undefined);
  await conn.close().catch(() => undefined);
  return 'still-valid';
}
