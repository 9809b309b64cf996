import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type { RemovalPolicy } from 'aws-cdk-lib';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type { Construct } from 'constructs';
import { GSIS, TABLE_KEYS, TTL_ATTRIBUTE } from '../shared/ledger/table.ts';

export interface LedgerBuilderProps {
  readonly key: kms.IKey;
  readonly removalPolicy: RemovalPolicy;
  readonly deletionProtection: boolean;
}

const attr = (k: { name: string; type: 'S' | 'N' }): dynamodb.Attribute => ({
  name: k.name,
  type: k.type === 'S' ? dynamodb.AttributeType.STRING : dynamodb.AttributeType.NUMBER,
});

/** The ledger table with the keys, TTL and indexes of shared/ledger/table.ts. */
export function buildLedgerTable(scope: Construct, props: LedgerBuilderProps): dynamodb.Table {
  const table = new dynamodb.Table(scope, 'Ledger', {
    partitionKey: attr(TABLE_KEYS.partitionKey),
    sortKey: attr(TABLE_KEYS.sortKey),
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    deletionProtection: props.deletionProtection,
    timeToLiveAttribute: TTL_ATTRIBUTE,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: props.key,
    removalPolicy: props.removalPolicy,
  });
  for (const gsi of GSIS) {
    table.addGlobalSecondaryIndex({
      indexName: gsi.indexName,
      partitionKey: attr(gsi.partitionKey),
      sortKey: attr(gsi.sortKey),
      projectionType: gsi.projection === 'ALL' ? dynamodb.ProjectionType.ALL : dynamodb.ProjectionType.KEYS_ONLY,
    });
  }
  return table;
}

/** The table and each of its indexes, as IAM resources. */
export function ledgerArns(table: dynamodb.ITable): { table: string; indexes: string[] } {
  return { table: table.tableArn, indexes: GSIS.map((g) => `${table.tableArn}/index/${g.indexName}`) };
}
