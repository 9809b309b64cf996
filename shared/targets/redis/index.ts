import type { TargetKind } from '../kind.ts';
import { redisAws } from './aws.ts';
import { redisDriverFactory } from './driver.ts';
import type { RedisAccess, RedisSettings } from './settings.ts';

/** Redis 7 ACL: a user per credential; revoke kills its clients and deletes it (saving the aclfile); verify proves both. */
export const redisKind: TargetKind<RedisSettings, RedisAccess, 'resolveSecret'> = {
  ...redisDriverFactory,
  aws: redisAws,
  localModule: new URL('./local.ts', import.meta.url).href,
};
