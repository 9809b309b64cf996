import type { DriverFactory } from './driver.ts';
import { awsRoleDriverFactory } from './aws-role.ts';
import { postgresDriverFactory } from './postgres.ts';

/** Every target kind tasklease knows. A new kind is one driver file plus one line here. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const DRIVER_FACTORIES: ReadonlyArray<DriverFactory<any, any>> = [postgresDriverFactory, awsRoleDriverFactory];
