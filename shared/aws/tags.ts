import { grantKey } from '../events/schemas.ts';
import type { Grant } from '../events/schemas.ts';

/** An AWS tag value (STS session tags, resource tags): at most 256 characters of a limited set. */
export function awsTagValue(value: string): string {
  return value.replace(/[^\p{L}\p{Z}\p{N}_.:/=+\-@]/gu, '_').slice(0, 256);
}

/** The tags every AWS artefact of a credential carries (its STS session, its secret). */
export function credentialTags(taskId: string, workload: string, grant: Grant): Array<{ Key: string; Value: string }> {
  return [
    { Key: 'tasklease:task', Value: awsTagValue(taskId) },
    { Key: 'tasklease:workload', Value: awsTagValue(workload) },
    { Key: 'tasklease:grant', Value: awsTagValue(grantKey(grant)) },
  ];
}
