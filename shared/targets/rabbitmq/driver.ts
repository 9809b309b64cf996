import type { Grant } from '../../events/schemas.ts';
import { ConfigError } from '../../lease/errors.ts';
import type { IssueContext, IssuedCredential, RevokeContext, TargetDriver, VerifyContext, VerifyResult } from '../../lease/ports.ts';
import { cappedConcurrency } from '../driver.ts';
import type { DriverFactory, DriverServices } from '../driver.ts';
import type { RabbitmqAdmin } from './admin.ts';
import { RabbitmqTargetError } from './errors.ts';
import { issueUser } from './issue.ts';
import { ManagementApi, resolveAdminPassword } from './management.ts';
import { managedUserPattern, RABBITMQ_KIND, userNameFor } from './names.ts';
import { closeConnections, listConnections, revokeUser } from './revoke.ts';
import { RabbitmqAccessSchema, RabbitmqSettingsSchema } from './settings.ts';
import type { RabbitmqAccess, RabbitmqSettings } from './settings.ts';
import { tryLogin, verifyUser } from './verify.ts';

// The names other modules import from this path; their homes are beside it.
export { RabbitmqTargetError } from './errors.ts';
export { HASHING_ALGORITHM, rabbitSha256Hash } from './issue.ts';
export { RABBITMQ_KIND, userNameFor } from './names.ts';
export { parseRabbitmqAccess, parseRabbitmqSettings, RabbitmqAccessSchema, RabbitmqSettingsSchema } from './settings.ts';
export type { RabbitmqAccess, RabbitmqPermission, RabbitmqSettings, RabbitmqSettingsInput } from './settings.ts';

export type RabbitmqServices = Pick<DriverServices, 'resolveSecret'>;

/**
 * One RabbitMQ broker as a target: a user per credential with the access level's permissions in
 * each of its vhosts, managed through the management HTTP API. The jobs live beside it (issue.ts,
 * revoke.ts, verify.ts); this class holds the API client and refuses to touch any user whose name
 * is not one tasklease makes.
 */
export class RabbitmqDriver implements TargetDriver, RabbitmqAdmin {
  readonly kind = RABBITMQ_KIND;
  readonly api: ManagementApi;
  private readonly pattern: RegExp;

  constructor(
    readonly name: string,
    readonly settings: RabbitmqSettings,
    private readonly access: Readonly<Record<string, RabbitmqAccess>>,
    services: RabbitmqServices = {},
  ) {
    this.pattern = managedUserPattern(settings.userPrefix);
    this.api = new ManagementApi(name, settings, () => resolveAdminPassword(settings, name, services.resolveSecret));
  }

  externalId(taskId: string, grant: Grant): string {
    return userNameFor(this.settings.userPrefix, taskId, grant);
  }

  async issue(ctx: IssueContext): Promise<IssuedCredential> {
    return issueUser(this, this.access, ctx, this.requireManaged(ctx.externalId));
  }

  async revoke(ctx: RevokeContext): Promise<void> {
    return revokeUser(this, this.requireManaged(ctx.externalId));
  }

  async verify(ctx: VerifyContext): Promise<VerifyResult> {
    return verifyUser(this, ctx, this.requireManaged(ctx.externalId));
  }

  /** Users that look like ours (prefix + hash), for reconciliation both ways. */
  async listManaged(): Promise<string[]> {
    const { body } = await this.api.request('listManaged', 'GET', '/api/users?columns=name', [200]);
    if (!Array.isArray(body)) throw new RabbitmqTargetError('rabbitmq listManaged: the answer is not a list');
    return (body as Array<{ name?: unknown }>)
      .map((u) => u.name)
      .filter((n): n is string => typeof n === 'string' && this.pattern.test(n))
      .sort();
  }

  async close(): Promise<void> {
    // Nothing held open: fetch's keep-alive sockets are unref'd by Node.
  }

  // The jobs' steps, as methods so that one driver instance can replace them (tests, bench).

  listConnections(user: string): Promise<string[]> {
    return listConnections(this, user);
  }

  closeConnections(user: string, names: readonly string[]): Promise<void> {
    return closeConnections(this, user, names);
  }

  tryLogin(secret: Record<string, string>, user: string, password: string): Promise<'refused' | 'still-valid' | 'inconclusive'> {
    return this.api.bounded(() => tryLogin(this, secret, user, password));
  }

  private requireManaged(externalId: string): string {
    // Never the admin, a human or a service account: only names this kind makes.
    if (!this.pattern.test(externalId)) {
      throw new RabbitmqTargetError(`rabbitmq target ${this.name}: external id is not a tasklease-managed user name`, undefined, false);
    }
    return externalId;
  }
}

export const rabbitmqDriverFactory: DriverFactory<RabbitmqSettings, RabbitmqAccess, 'resolveSecret'> = {
  kind: RABBITMQ_KIND,
  settingsSchema: RabbitmqSettingsSchema,
  accessSchema: RabbitmqAccessSchema,
  services: ['resolveSecret'],
  create(target, services) {
    const ref = target.settings.adminPasswordSecret;
    if (ref !== undefined && !ref.startsWith('file:') && !ref.startsWith('env:') && !services.resolveSecret) {
      throw new ConfigError(`targets.${target.name}.settings.adminPasswordSecret needs a runtime with a secret resolver`);
    }
    // The target's maxConcurrency bounds the admin work in every runtime, not only the local one.
    const settings = { ...target.settings, adminConcurrency: cappedConcurrency(target.settings.adminConcurrency, target) };
    return new RabbitmqDriver(target.name, settings, target.access, services);
  },
};
