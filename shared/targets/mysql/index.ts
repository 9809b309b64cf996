import type { TargetKind } from '../kind.ts';
import { mysqlAws } from './aws.ts';
import { mysqlDriverFactory } from './driver.ts';
import type { MysqlAccess, MysqlSettings } from './settings.ts';

/** MySQL 8 / MariaDB 10.11+: an account per credential; revoke locks, kills every session, drops; verify proves both. */
export const mysqlKind: TargetKind<MysqlSettings, MysqlAccess, 'resolveSecret'> = {
  ...mysqlDriverFactory,
  aws: mysqlAws,
  localModule: new URL('./local.ts', import.meta.url).href,
};
