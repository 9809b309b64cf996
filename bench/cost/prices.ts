/**
 * Published on-demand prices, us-east-1, as read on 2026-12-02 (bench/README.md lists each with
 * its source). No free tier is applied: the figures are the marginal cost of one more task.
 */
export const PRICES_READ_ON = '2026-12-02';
export const PRICE_REGION = 'us-east-1';

export interface Price {
  usd: number;
  per: string;
  source: string;
  note?: string;
}

export const PRICES = {
  dynamoWriteUnit: {
    usd: 0.625 / 1e6,
    per: 'write request unit (on-demand)',
    source: 'https://airbyte.com/data-engineering-resources/dynamodb-pricing',
    note: 'after the November 2024 on-demand price cut (AWS News Blog post on DynamoDB on-demand, updated 2025-01-31)',
  },
  dynamoReadUnit: {
    usd: 0.125 / 1e6,
    per: 'read request unit (on-demand)',
    source: 'https://airbyte.com/data-engineering-resources/dynamodb-pricing',
  },
  lambdaRequest: {
    usd: 0.2 / 1e6,
    per: 'invocation',
    source: 'https://cloudchipr.com/blog/aws-lambda-pricing',
  },
  lambdaGbSecondArm: {
    usd: 0.0000133334,
    per: 'GB-second, arm64 (first 7.5 billion GB-s a month)',
    source: 'https://cloudchipr.com/blog/aws-lambda-pricing',
  },
  lambdaGbSecondX86: {
    usd: 0.0000166667,
    per: 'GB-second, x86_64 (first 6 billion GB-s a month)',
    source: 'https://cloudchipr.com/blog/aws-lambda-pricing',
  },
  eventBridgeEvent: {
    usd: 1 / 1e6,
    per: 'custom event put on a bus (each 64 KB chunk); same-account delivery to targets is free',
    source: 'https://cloudburn.io/blog/amazon-eventbridge-pricing',
  },
  sqsRequest: {
    usd: 0.4 / 1e6,
    per: 'standard-queue request (each 64 KB chunk), first 100 billion a month',
    source: 'https://cloudburn.io/blog/amazon-sqs-pricing',
  },
  secretMonth: {
    usd: 0.4,
    per: 'secret-month (prorated for secrets stored less than a month)',
    source:
      'https://raw.githubusercontent.com/api-evangelist/amazon-secrets-manager/refs/heads/main/plans/amazon-secrets-manager-plans-pricing.yml',
    note: 'transcribed from aws.amazon.com/secrets-manager/pricing; a month is taken as 730 hours',
  },
  secretsApiCall: {
    usd: 0.05 / 1e4,
    per: 'Secrets Manager API call',
    source: 'https://hivebook.wiki/wiki/aws-secrets-manager-rotated-secrets-dynamic-db-credentials-kms',
  },
  kmsRequest: {
    usd: 0.03 / 1e4,
    per: 'KMS request (symmetric key)',
    source: 'https://www.wring.co/blog/aws-kms-pricing-guide',
  },
  stsIamCall: {
    usd: 0,
    per: 'STS / IAM API call',
    source: 'https://docs.aws.amazon.com/cost-management/latest/userguide/security-iam.html',
    note: 'IAM (and STS) are offered at no additional charge',
  },
  logsIngestedGb: {
    usd: 0.5,
    per: 'GB of CloudWatch Logs ingested (standard class)',
    source: 'https://c3x.dev/blog/cloudwatch-logs-cost-optimization',
  },
  xrayTrace: {
    usd: 5 / 1e6,
    per: 'X-Ray trace recorded',
    source: 'not found in a stored page on 2026-12-02: the long-standing list price, unverified',
  },
} as const satisfies Record<string, Price>;

export type PriceName = keyof typeof PRICES;

/** Hours in a billing month, as AWS's calculators count them. */
export const HOURS_PER_MONTH = 730;
