import { DynamoDBClient } from '@aws-sdk/client-dynamodb';

/** Region for a loopback endpoint when none is given: dynalite and DynamoDB Local accept any. */
export const LOCAL_REGION = 'local';
/** dynalite checks that requests are signed, not by whom: a fixed, meaningless identity. */
const LOCAL_CREDENTIALS = { accessKeyId: 'tasklease-local', secretAccessKey: 'tasklease-local' };

export function isLoopbackUrl(url: string): boolean {
  const host = new URL(url).hostname;
  return host === '127.0.0.1' || host === 'localhost' || host === '[::1]';
}

/**
 * The DynamoDB client for a ledger: the AWS SDK's default credentials and region, or on a
 * loopback endpoint (dynalite, DynamoDB Local) the same fixed identity the local runtime uses.
 */
export function dynamoClient(options: { endpoint?: string; region?: string }): DynamoDBClient {
  const { endpoint, region } = options;
  if (endpoint !== undefined && isLoopbackUrl(endpoint)) return localDynamoClient(endpoint, region);
  return new DynamoDBClient({ endpoint, region });
}

/** A client of a local DynamoDB-compatible server (dynalite, DynamoDB Local) on `endpoint`. */
export function localDynamoClient(endpoint: string, region: string = LOCAL_REGION): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region, credentials: LOCAL_CREDENTIALS, maxAttempts: 3 });
}
