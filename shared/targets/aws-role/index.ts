import type { TargetKind } from '../kind.ts';
import { awsRoleAws } from './aws.ts';
import { awsRoleDriverFactory } from './driver.ts';
import type { AwsRoleAccess, AwsRoleSettings } from './settings.ts';

/** No local provision: locally an aws-role target needs real (or emulated) AWS credentials. */
export const awsRoleKind: TargetKind<AwsRoleSettings, AwsRoleAccess, 'awsClient' | 'lock'> = {
  ...awsRoleDriverFactory,
  aws: awsRoleAws,
};
