/** Credentials and client options for talking to the emulated account. */
import { REGION } from './config.ts';

/** The account's root-like identity (moto's default account accepts any key; these are not secrets). */
const ADMIN = { accessKeyId: 'AKIAEMULATEDADMIN000', secretAccessKey: 'emulated-admin-secret' };

export function adminCredentials(): Record<string, string> {
  return { AWS_ACCESS_KEY_ID: ADMIN.accessKeyId, AWS_SECRET_ACCESS_KEY: ADMIN.secretAccessKey };
}
adminCredentials.sdk = () => ({ ...ADMIN });
adminCredentials.accessKeyId = ADMIN.accessKeyId;

export interface SessionCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Options for an SDK v3 client on the emulator (or the authorizer in front of it). */
export const clientOptions = (endpoint: string, credentials: SessionCredentials = adminCredentials.sdk()) => ({
  endpoint,
  region: REGION,
  credentials,
  maxAttempts: 2,
});
