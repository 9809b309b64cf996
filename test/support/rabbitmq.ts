import net from 'node:net';
import amqp from 'amqplib';
import { afterAll, beforeAll } from 'vitest';
import { findRabbitmqBinaries, RABBITMQ_PACKAGE, startEmbeddedRabbitmq } from '../../shared/targets/rabbitmq/embedded.ts';
import type { EmbeddedRabbitmq, EmbeddedRabbitmqOptions } from '../../shared/targets/rabbitmq/embedded.ts';
import { seg } from '../../shared/targets/rabbitmq/management.ts';

/**
 * Whether the RabbitMQ binaries are here. Missing: the rabbitmq suites skip with one line naming
 * the package, except under CI=true, where a missing binary fails the run.
 */
export const RABBITMQ_AVAILABLE = findRabbitmqBinaries() !== undefined;
if (!RABBITMQ_AVAILABLE) {
  const line = `rabbitmq target tests need RabbitMQ: apt-get install ${RABBITMQ_PACKAGE} (rabbitmq-server and epmd not found)`;
  if (process.env.CI === 'true') throw new Error(line);
  console.warn(`skipped: ${line}`);
}

/** One broker per test file (start-up takes seconds): started in beforeAll, stopped and removed in afterAll. */
export function useEmbeddedRabbitmq(opts: EmbeddedRabbitmqOptions = {}): () => EmbeddedRabbitmq {
  let instance: EmbeddedRabbitmq | undefined;
  beforeAll(async () => {
    if (RABBITMQ_AVAILABLE) instance = await startEmbeddedRabbitmq(opts);
  }, 120_000);
  afterAll(async () => {
    await instance?.stop();
    instance = undefined;
  }, 30_000);
  return () => {
    if (!instance) throw new Error('embedded rabbitmq is not running (use it inside tests)');
    return instance;
  };
}

/** An AMQP connection with an issued credential, as the workload opens it (its uri). Caller closes it. */
export async function connectWith(secret: Record<string, string>): Promise<amqp.ChannelModel> {
  const conn = await amqp.connect(secret.uri!, { timeout: 5_000 });
  // A forced close emits 'error'; tests observe it through `closed`.
  conn.on('error', () => undefined);
  return conn;
}

/** Resolves with the close error's message (or 'closed') when the connection closes. */
export function closed(conn: amqp.ChannelModel): Promise<string> {
  return new Promise((resolve) => conn.once('close', (err?: Error) => resolve(err?.message ?? 'closed')));
}

/** The message a promise rejects with; undefined when it resolves. */
export async function failureOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** Runs `fn` on a fresh channel; the channel's failure (a 403 closes it) comes back as the message. */
export async function onChannel(conn: amqp.ChannelModel, fn: (ch: amqp.Channel) => Promise<unknown>): Promise<string | undefined> {
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  const result = await failureOf(fn(ch));
  await ch.close().catch(() => undefined);
  return result;
}

export async function connectionsOf(server: EmbeddedRabbitmq, user: string): Promise<string[]> {
  const { body } = await server.api('GET', `/api/connections/username/${seg(user)}`);
  return (body as Array<{ name: string }>).map((c) => c.name);
}

export async function userExists(server: EmbeddedRabbitmq, user: string): Promise<boolean> {
  return (await server.api('GET', `/api/users/${seg(user)}`)).status === 200;
}

/** A TCP proxy to a local port that can be taken down and brought back (a management API outage). */
export interface TcpProxy {
  port: number;
  url: string;
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function tcpProxy(targetPort: number, host = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect({ host, port: targetPort });
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on('close', () => sockets.delete(sock));
          sock.on('error', () => undefined);
        }
        client.pipe(upstream).pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      s.once('error', reject);
      s.listen(port, host, () => {
        port = (s.address() as net.AddressInfo).port;
        server = s;
        resolve();
      });
    });
  const down = async () => {
    const s = server;
    server = undefined;
    for (const sock of sockets) sock.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return {
    port,
    url: `http://${host}:${port}/`,
    down,
    up: () => (server ? Promise.resolve() : listen()),
    close: down,
  };
}
