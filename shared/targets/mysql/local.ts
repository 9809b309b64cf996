import type { LocalDeclaration, LocalProvision } from '../kind.ts';
import { startEmbeddedMariadb } from './embedded.ts';
import type { EmbeddedMariadb } from './embedded.ts';
import type { MysqlAccess, MysqlSettings } from './settings.ts';

/**
 * Locally a mysql target is a throw-away MariaDB (Debian's mariadb-server binaries as a child
 * process, seeded with the demo `orders` database). The config's host, port and admin are
 * placeholders the started server replaces; the admin password stays a reference, which the
 * provision resolves to the server's random password.
 */
export const local: LocalDeclaration<MysqlSettings, MysqlAccess> = {
  async provide(target, ctx): Promise<LocalProvision<MysqlSettings>> {
    const server = await startEmbeddedMariadb({ userPrefix: target.settings.userPrefix });
    const ref = `tasklease-local:mysql/${target.name}/admin`;
    // As wide as the bus, so revocations do not queue for a connection; never above the target's maxConcurrency.
    const wanted = ctx.adminPoolMax ?? Math.max(4, ctx.busConcurrency);
    const { password: _inline, ...settings } = target.settings;
    return {
      settings: {
        ...settings,
        host: server.host,
        port: server.port,
        user: server.adminUser,
        passwordSecret: ref,
        flavor: 'mariadb',
        adminPoolMax: Math.min(wanted, target.maxConcurrency ?? wanted, 100),
      },
      resolveSecret: async (r) => (r === ref ? server.adminPassword : undefined),
      service: server,
      describe: `MariaDB on ${server.host}:${server.port}`,
      stop: () => server.stop(),
    };
  },
};

/** The embedded server the local runtime started for a mysql target (tests, demo, chaos). */
export function embeddedMariadbOf(provision: LocalProvision | undefined): EmbeddedMariadb {
  const server = provision?.service as EmbeddedMariadb | undefined;
  if (!server || typeof server.adminPassword !== 'string' || typeof server.socket !== 'string') {
    throw new Error('this target has no embedded MariaDB');
  }
  return server;
}
