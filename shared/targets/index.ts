import type { TargetKind } from './kind.ts';
import { awsRoleKind } from './aws-role/index.ts';
import { mysqlKind } from './mysql/index.ts';
import { postgresKind } from './postgres/index.ts';
import { rabbitmqKind } from './rabbitmq/index.ts';
import { redisKind } from './redis/index.ts';

/** Every target kind tasklease knows. A new kind is one folder under shared/targets/ plus one line here. */
export const TARGET_KINDS: readonly TargetKind[] = [postgresKind, awsRoleKind, mysqlKind, redisKind, rabbitmqKind];

/** The driver-factory view of the kinds (config validation, the target registry). */
export const DRIVER_FACTORIES = TARGET_KINDS;
