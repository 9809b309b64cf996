import type { TargetKind } from '../kind.ts';
import { postgresAws } from './aws.ts';
import { postgresDriverFactory } from './driver.ts';
import type { PostgresAccess, PostgresSettings } from './settings.ts';

export const postgresKind: TargetKind<PostgresSettings, PostgresAccess, 'resolveSecret'> = {
  ...postgresDriverFactory,
  aws: postgresAws,
  localModule: new URL('./local.ts', import.meta.url).href,
};
