import type { TargetKind } from '../../../shared/targets/kind.ts';
import { kvAws } from './aws.ts';
import { kvDriverFactory } from './driver.ts';
import type { KvAccess, KvSettings } from './settings.ts';

/** A target kind made only for tests: the folder shape of shared/targets/<kind>/, registered by one line. */
export const kvKind: TargetKind<KvSettings, KvAccess, 'resolveSecret'> = {
  ...kvDriverFactory,
  aws: kvAws,
  localModule: new URL('./local.ts', import.meta.url).href,
};
