import type { TargetKind } from './kind.ts';
import { awsRoleKind } from './aws-role/index.ts';
import { mysqlKind } from './mysql/index.ts';
import { postgresKind } from './postgres/index.ts';
import { rabbitmqKind } from './rabbitmq/index.ts';
import { redisKind } from './redis/index.ts';

/**
 * Every target kind tasklease knows. A new kind is one folder under shared/targets/ plus one line
 * here; a line testing `process.env.TASKLEASE_KIND_<KIND>` lets a Lambda bundle whose config has no
 * target of that kind leave it out (infra/bundling.ts, kindSwitch; the folder's package.json says
 * it has no side effects). Nothing sets these variables at run time.
 */
export const TARGET_KINDS: readonly TargetKind[] = [
  postgresKind,
  awsRoleKind,
  ...(process.env.TASKLEASE_KIND_MYSQL === 'off' ? [] : [mysqlKind]),
  ...(process.env.TASKLEASE_KIND_REDIS === 'off' ? [] : [redisKind]),
  ...(process.env.TASKLEASE_KIND_RABBITMQ === 'off' ? [] : [rabbitmqKind]),
];

/** The driver-factory view of the kinds (config validation, the target registry). */
export const DRIVER_FACTORIES = TARGET_KINDS;
