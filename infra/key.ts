import type { RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type { Construct } from 'constructs';
import { viaSecretsManager } from './permissions.ts';

export interface KeyBuilderProps {
  readonly removalPolicy: RemovalPolicy;
  /** Workload principals (rules[].awsPrincipal) that read their delivered secrets. */
  readonly readerPrincipals: readonly string[];
}

/** The customer-managed key of the queues, the ledger table, the bus and delivered secrets. */
export function buildKey(scope: Construct, props: KeyBuilderProps): kms.Key {
  const key = new kms.Key(scope, 'Key', {
    description: 'tasklease: queues, ledger table, event bus and delivered secrets',
    enableKeyRotation: true,
    removalPolicy: props.removalPolicy,
  });
  // Workloads read their delivered secret; Secrets Manager decrypts with this key on their behalf.
  if (props.readerPrincipals.length > 0) {
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'WorkloadsDecryptDeliveredSecrets',
        principals: props.readerPrincipals.map((arn) => new iam.ArnPrincipal(arn)),
        actions: ['kms:Decrypt'],
        resources: ['*'], // in a key policy, "*" is this key
        conditions: viaSecretsManager(),
      }),
    );
  }
  return key;
}
