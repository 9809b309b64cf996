import type { TargetKind } from '../kind.ts';
import { rabbitmqAws } from './aws.ts';
import { rabbitmqDriverFactory } from './driver.ts';
import type { RabbitmqAccess, RabbitmqSettings } from './settings.ts';

export const rabbitmqKind: TargetKind<RabbitmqSettings, RabbitmqAccess, 'resolveSecret'> = {
  ...rabbitmqDriverFactory,
  aws: rabbitmqAws,
  localModule: new URL('./local.ts', import.meta.url).href,
};
