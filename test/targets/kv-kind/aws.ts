import { ConfigError } from '../../../shared/lease/errors.ts';
import type { AwsDeclaration } from '../../../shared/targets/kind.ts';
import type { KvAccess, KvSettings } from './settings.ts';

/** In AWS the functions read the store's admin token from Secrets Manager; a plain-http store is refused at synth. */
export const kvAws: AwsDeclaration<KvSettings, KvAccess> = {
  needs(target) {
    if (!target.settings.endpoint.startsWith('https://')) {
      throw new ConfigError(`targets.${target.name}.settings.endpoint must use https:// in AWS (the admin token crosses it)`);
    }
    return {
      statements: [
        { sid: 'ReadKvAdminToken', actions: ['secretsmanager:GetSecretValue'], resources: [target.settings.adminTokenSecret], job: 'any' },
      ],
    };
  },
};
