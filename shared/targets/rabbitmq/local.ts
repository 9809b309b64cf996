import type { LocalDeclaration, LocalProvision } from '../kind.ts';
import { startEmbeddedRabbitmq } from './embedded.ts';
import type { EmbeddedRabbitmq } from './embedded.ts';
import type { RabbitmqAccess, RabbitmqSettings } from './settings.ts';

/**
 * Locally a rabbitmq target is a throw-away broker (Debian's rabbitmq-server as a child process)
 * with every vhost the access levels name. The config's URLs and admin are placeholders the
 * started broker replaces; the admin password stays a reference, resolved to the broker's random one.
 */
export const local: LocalDeclaration<RabbitmqSettings, RabbitmqAccess> = {
  async provide(target, ctx): Promise<LocalProvision<RabbitmqSettings>> {
    const vhosts = [...new Set(Object.values(target.access).flatMap((a) => Object.keys(a.vhosts)))].filter((v) => v !== '/');
    const server = await startEmbeddedRabbitmq({ vhosts });
    const ref = `tasklease-local:rabbitmq/${target.name}/admin`;
    // As wide as the bus, so revocations do not queue for the API; never above the target's maxConcurrency.
    const wanted = ctx.adminPoolMax ?? Math.max(4, ctx.busConcurrency);
    const { adminPassword: _inline, ...settings } = target.settings;
    return {
      settings: {
        ...settings,
        managementUrl: server.managementUrl,
        amqpUrl: server.amqpUrl,
        adminUser: server.adminUser,
        adminPasswordSecret: ref,
        adminConcurrency: Math.min(wanted, target.maxConcurrency ?? wanted, 100),
      },
      resolveSecret: async (r) => (r === ref ? server.adminPassword : undefined),
      service: server,
      describe: `RabbitMQ on ${server.host}:${server.amqpPort} (management ${server.managementPort})`,
      stop: () => server.stop(),
    };
  },
};

/** The embedded broker the local runtime started for a rabbitmq target (tests, demo, chaos). */
export function embeddedRabbitmqOf(provision: LocalProvision | undefined): EmbeddedRabbitmq {
  const server = provision?.service as EmbeddedRabbitmq | undefined;
  if (!server || typeof server.adminPassword !== 'string' || typeof server.managementPort !== 'number') {
    throw new Error('this target has no embedded RabbitMQ');
  }
  return server;
}
