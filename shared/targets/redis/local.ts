import type { LocalDeclaration, LocalProvision } from '../kind.ts';
import { startEmbeddedRedis } from './embedded.ts';
import type { EmbeddedRedis } from './embedded.ts';
import type { RedisAccess, RedisSettings } from './settings.ts';

/**
 * Locally a redis target is a throw-away Redis (Debian's redis-server as a child process, with an
 * aclfile and the demo `orders:` keys). The config's host, port and admin are placeholders the
 * started server replaces; the admin password stays a reference, which the provision resolves.
 */
export const local: LocalDeclaration<RedisSettings, RedisAccess> = {
  async provide(target, ctx): Promise<LocalProvision<RedisSettings>> {
    const server = await startEmbeddedRedis({ userPrefix: target.settings.userPrefix });
    const ref = `tasklease-local:redis/${target.name}/admin`;
    // As wide as the bus, so revocations do not queue; never above the target's maxConcurrency.
    const wanted = ctx.adminPoolMax ?? Math.max(4, ctx.busConcurrency);
    const { password: _inline, ...settings } = target.settings;
    return {
      settings: {
        ...settings,
        host: server.host,
        port: server.port,
        user: server.adminUser,
        passwordSecret: ref,
        tls: false,
        adminConcurrency: Math.min(wanted, target.maxConcurrency ?? wanted, 100),
      },
      resolveSecret: async (r) => (r === ref ? server.adminPassword : undefined),
      service: server,
      describe: `Redis on ${server.host}:${server.port}`,
      stop: () => server.stop(),
    };
  },
};

/** The embedded server the local runtime started for a redis target (tests, demo, chaos). */
export function embeddedRedisOf(provision: LocalProvision | undefined): EmbeddedRedis {
  const server = provision?.service as EmbeddedRedis | undefined;
  if (!server || typeof server.adminPassword !== 'string' || typeof server.ownerPassword !== 'string') {
    throw new Error('this target has no embedded Redis');
  }
  return server;
}
