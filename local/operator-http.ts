import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import type { Broker } from '../shared/broker/create.ts';
import { OperatorRequestError } from '../shared/broker/operator.ts';
import { parseJsonStrict } from '../shared/events/strict-json.ts';
import { describeError, InvalidEventError } from '../shared/lease/errors.ts';

/** Where `tasklease revoke|unlock` finds a held local runtime's operator endpoint by default. */
export const OPERATOR_FILE = '.tasklease/operator.json';
const MAX_BODY_BYTES = 16 * 1024;

export interface OperatorEndpoint {
  url: string;
  /** The bearer token a request must carry; also in the 0600 file when one was written. */
  token: string;
  close(): Promise<void>;
}

/**
 * The local runtime's break-glass endpoint: `POST /operator` with a bearer token, on 127.0.0.1
 * only (the AWS runtime's counterpart is the operator function). The token is random per start
 * and written only to a file readable by its owner, like a Jupyter token.
 */
export async function startOperatorEndpoint(broker: Broker, options: { port?: number; file?: string } = {}): Promise<OperatorEndpoint> {
  const token = randomBytes(24).toString('base64url');
  const expected = Buffer.from(`Bearer ${token}`);
  const server = createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'POST' || req.url !== '/operator') return reply(404, { ok: false, error: 'POST /operator only' });
    const given = Buffer.from(req.headers.authorization ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return reply(401, { ok: false, error: `missing or wrong operator token (see ${OPERATOR_FILE})` });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      void (async () => {
        try {
          const request = parseJsonStrict(Buffer.concat(chunks).toString('utf8'), 'operator request');
          reply(200, { ok: true, result: await broker.operator(request) });
        } catch (err) {
          if (err instanceof OperatorRequestError || err instanceof InvalidEventError) {
            return reply(400, { ok: false, error: err.message });
          }
          reply(500, { ok: false, error: describeError(err) });
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/operator`;
  if (options.file) {
    mkdirSync(dirname(options.file), { recursive: true });
    writeFileSync(options.file, `${JSON.stringify({ url, token })}\n`, { mode: 0o600 });
    chmodSync(options.file, 0o600);
  }
  return {
    url,
    token,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
