import { ConfigError } from '../../lease/errors.ts';
import type { RabbitmqAdmin } from './admin.ts';
import { RabbitmqTargetError, sleep } from './errors.ts';
import { seg } from './management.ts';

/**
 * Deletes the task's user (RabbitMQ closes its connections as it does) and then closes any
 * connection still tracked for the name, until none is left. Idempotent: a user already gone is
 * fine, and its leftover connections are still closed. Any failure is retryable: a revocation is
 * never abandoned.
 */
export async function revokeUser(admin: RabbitmqAdmin, user: string): Promise<void> {
  try {
    await admin.api.request('revoke', 'DELETE', `/api/users/${seg(user)}`, [204, 404]);
    await drainConnections(admin, user);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if (err instanceof RabbitmqTargetError) throw err.retryable ? err : new RabbitmqTargetError(err.message, err.status, true);
    throw new RabbitmqTargetError('rabbitmq revoke failed');
  }
}

/**
 * Lists the user's connections (GET /api/connections/username/…: the broker's tracking table,
 * current at once, where /api/connections lags by the stats interval) and closes them, until the
 * list is empty or sessionDrainTimeoutMs passes. Without connections it costs one request.
 */
export async function drainConnections(admin: RabbitmqAdmin, user: string): Promise<void> {
  const timeoutMs = admin.settings.sessionDrainTimeoutMs;
  const deadline = Date.now() + timeoutMs;
  let pause = 5;
  for (;;) {
    const open = await admin.listConnections(user);
    if (open.length === 0) return;
    if (Date.now() > deadline) {
      throw new RabbitmqTargetError(`rabbitmq revoke: ${open.length} connection(s) of ${user} still open after ${timeoutMs} ms`);
    }
    // Closing one that is already going (the delete's own close) can fail (HTTP 500): the next look decides.
    await admin.closeConnections(user, open).catch((err: unknown) => {
      if (!(err instanceof RabbitmqTargetError && err.status !== undefined)) throw err;
    });
    // A closed connection leaves the tracking table a moment later.
    await sleep(pause);
    pause = Math.min(pause * 2, 100);
  }
}

export async function listConnections(admin: RabbitmqAdmin, user: string): Promise<string[]> {
  const { body } = await admin.api.request('connection list', 'GET', `/api/connections/username/${seg(user)}`, [200]);
  if (!Array.isArray(body)) throw new RabbitmqTargetError('rabbitmq connection list: the answer is not a list');
  return (body as Array<{ name?: unknown }>).map((c) => c.name).filter((n): n is string => typeof n === 'string');
}

/**
 * Closes the user's connections by name of user, through the connection tracking table: the
 * per-connection route (DELETE /api/connections/{name}) looks the name up in the stats database,
 * which learns a new connection only at its next collection (seconds), and answers 404 until then.
 * A broker without the by-user route (405) gets the per-connection deletes.
 */
export async function closeConnections(admin: RabbitmqAdmin, user: string, names: readonly string[]): Promise<void> {
  const { status } = await admin.api.request('connection close', 'DELETE', `/api/connections/username/${seg(user)}`, [204, 404, 405]);
  if (status !== 405) return;
  await Promise.all(names.map((n) => admin.api.request('connection close', 'DELETE', `/api/connections/${seg(n)}`, [204, 404])));
}
