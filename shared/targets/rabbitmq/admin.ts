import type { ManagementApi } from './management.ts';
import type { RabbitmqSettings } from './settings.ts';

/**
 * What the job modules (issue.ts, revoke.ts, verify.ts) use of a rabbitmq target. The driver
 * implements it and the jobs call their steps through it, so one driver instance can time or
 * replace a step (a test's driver that skips the close) and every job sees that.
 */
export interface RabbitmqAdmin {
  /** The configured target name, for error messages. */
  readonly name: string;
  readonly settings: RabbitmqSettings;
  readonly api: ManagementApi;
  /** The names of the user's open connections, from the broker's connection tracking (not the lagging stats). */
  listConnections(user: string): Promise<string[]>;
  /** Closes the user's connections (`names`: what listConnections saw; a gone one is fine). */
  closeConnections(user: string, names: readonly string[]): Promise<void>;
  /** An AMQP login with the credential (verify.ts). */
  tryLogin(secret: Record<string, string>, user: string, password: string): Promise<'refused' | 'still-valid' | 'inconclusive'>;
}
