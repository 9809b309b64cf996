import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LocalDeclaration } from '../../../shared/targets/kind.ts';
import type { KvAccess, KvSettings } from './settings.ts';

/** Locally a kv target is a tiny in-process store on a free loopback port, with a random admin token. */
export const local: LocalDeclaration<KvSettings, KvAccess> = {
  async provide(target) {
    const adminToken = randomBytes(24).toString('base64url');
    const tokens = new Map<string, string>(); // id → token
    const server = createServer((req, res) => {
      const bearer = req.headers.authorization?.replace(/^Bearer /, '');
      const id = /^\/tokens\/([\w-]+)$/.exec(req.url ?? '')?.[1];
      if (req.url === '/data') {
        res.writeHead([...tokens.values()].includes(bearer ?? '') ? 200 : 401).end();
        return;
      }
      if (bearer !== adminToken || !id) {
        res.writeHead(403).end();
        return;
      }
      if (req.method === 'DELETE') {
        res.writeHead(tokens.delete(id) ? 204 : 404).end();
        return;
      }
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk));
      req.on('end', () => {
        tokens.set(id, (JSON.parse(body) as { token: string }).token);
        res.writeHead(201).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const ref = target.settings.adminTokenSecret;
    return {
      settings: { ...target.settings, endpoint: `http://127.0.0.1:${port}/` },
      resolveSecret: async (r) => (r === ref ? adminToken : undefined),
      service: tokens,
      describe: `kv store on 127.0.0.1:${port}`,
      stop: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections(); // keep-alive connections of fetch would hold close() open
        }),
    };
  },
};
