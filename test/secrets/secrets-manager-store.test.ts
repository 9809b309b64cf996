import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  PutResourcePolicyCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { TargetError } from '../../shared/lease/errors.ts';
import { principalArnPatterns, secretResourcePolicy, SecretsManagerStore } from '../../shared/secrets/secrets-manager-store.ts';
import { ACCOUNT, awsError, BROKER_SESSION_ARN, FakeAws, REGION } from '../aws/fake-aws.ts';

const aws = new FakeAws();
afterAll(() => aws.restore());

const KMS_KEY = `arn:aws:kms:${REGION}:${ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;
const READER = `arn:aws:iam::${ACCOUNT}:role/etl-nightly`;
const BROKERS = [`arn:aws:iam::${ACCOUNT}:role/TaskLease-TaskStartedRole`, `arn:aws:iam::${ACCOUNT}:role/TaskLease-TaskEndedRole`];
const VALUE = { username: 'tl_0123', password: 'S3cret-Passw0rd-Value', host: 'db', port: '5432' };

const store = (opts: Partial<ConstructorParameters<typeof SecretsManagerStore>[1]> = {}) =>
  new SecretsManagerStore(new SecretsManagerClient({ region: REGION }), {
    kmsKeyId: KMS_KEY,
    brokerPrincipals: async () => BROKERS,
    ...opts,
  });

const input = (over: Partial<Parameters<SecretsManagerStore['put']>[0]> = {}) => ({
  name: 'tasklease/run-7/orders-db.read',
  value: VALUE,
  taskId: 'run-7',
  grant: { target: 'orders-db', access: 'read' },
  workload: 'spiffe://prod.example.org/etl/nightly',
  readerPrincipal: READER,
  ...over,
});

beforeEach(() => aws.reset());

describe('SecretsManagerStore.put', () => {
  it('creates the secret empty with the KMS key and tags, restricts it, then writes the value', async () => {
    const out = await store().put(input());
    const create = aws.sm.commandCalls(CreateSecretCommand);
    expect(create).toHaveLength(1);
    expect(create[0]!.args[0].input).toEqual({
      Name: 'tasklease/run-7/orders-db.read',
      KmsKeyId: KMS_KEY,
      Tags: [
        { Key: 'tasklease:task', Value: 'run-7' },
        { Key: 'tasklease:workload', Value: 'spiffe://prod.example.org/etl/nightly' },
        { Key: 'tasklease:grant', Value: 'orders-db.read' },
      ],
      Description: 'tasklease credential for task run-7, grant orders-db.read; deleted when the task ends',
    });
    // No value in CreateSecret: it exists only after the resource policy does.
    expect(create[0]!.args[0].input.SecretString).toBeUndefined();

    const policyCall = aws.sm.commandCalls(PutResourcePolicyCommand)[0]!.args[0].input;
    expect(policyCall.BlockPublicPolicy).toBe(true);
    expect(policyCall.SecretId).toBe(out.arn);
    expect(JSON.parse(policyCall.ResourcePolicy!)).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Sid: 'TaskleaseWorkloadReads',
          Effect: 'Allow',
          Principal: { AWS: READER },
          Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'],
          Resource: '*',
        },
        {
          Sid: 'TaskleaseNobodyElseReads',
          Effect: 'Deny',
          Principal: '*',
          Action: 'secretsmanager:GetSecretValue',
          Resource: '*',
          Condition: { ArnNotLike: { 'aws:PrincipalArn': [READER, ...BROKERS] } },
        },
        {
          Sid: 'TaskleaseOnlyBrokerChanges',
          Effect: 'Deny',
          Principal: '*',
          Action: [
            'secretsmanager:PutResourcePolicy',
            'secretsmanager:DeleteResourcePolicy',
            'secretsmanager:PutSecretValue',
            'secretsmanager:UpdateSecret',
          ],
          Resource: '*',
          Condition: { ArnNotLike: { 'aws:PrincipalArn': BROKERS } },
        },
      ],
    });
    const value = aws.sm.commandCalls(PutSecretValueCommand)[0]!.args[0].input;
    expect(JSON.parse(value.SecretString!)).toEqual(VALUE);

    // Order: create → restrict → fill.
    const order = aws.sm.calls().map((c) => (c.args[0] as object).constructor.name);
    expect(order).toEqual(['CreateSecretCommand', 'PutResourcePolicyCommand', 'PutSecretValueCommand']);
    expect(out).toEqual({ name: 'tasklease/run-7/orders-db.read', arn: aws.secrets.get('tasklease/run-7/orders-db.read')!.arn });
  });

  it('refuses to deliver a secret nobody but the broker could read', async () => {
    const err = await store()
      .put(input({ readerPrincipal: undefined }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetError);
    expect((err as TargetError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/has no awsPrincipal/);
    expect(aws.sm.calls()).toHaveLength(0);
  });

  it('on redelivery restricts and overwrites the existing secret', async () => {
    await store().put(input());
    const again = await store().put(input({ value: { ...VALUE, password: 'An0ther-Passw0rd-Value' } }));
    expect(aws.sm.commandCalls(PutResourcePolicyCommand)).toHaveLength(2);
    expect(JSON.parse(aws.secrets.get('tasklease/run-7/orders-db.read')!.value!).password).toBe('An0ther-Passw0rd-Value');
    expect(again.arn).toBe(aws.secrets.get('tasklease/run-7/orders-db.read')!.arn);
  });

  it('exempts an assumed-role broker by its role, whatever the role path', async () => {
    await store({ brokerPrincipals: async () => [BROKER_SESSION_ARN] }).put(input());
    const policy = JSON.parse(aws.sm.commandCalls(PutResourcePolicyCommand)[0]!.args[0].input.ResourcePolicy!);
    expect(policy.Statement[1].Condition.ArnNotLike['aws:PrincipalArn']).toEqual([
      READER,
      `arn:aws:iam::${ACCOUNT}:role/tasklease-broker`,
      `arn:aws:iam::${ACCOUNT}:role/*/tasklease-broker`,
    ]);
    expect(principalArnPatterns(READER)).toEqual([READER]);
    expect(JSON.parse(secretResourcePolicy(READER, [])).Statement[1].Condition.ArnNotLike['aws:PrincipalArn']).toEqual([READER]);
  });

  it('never puts the value in an error message', async () => {
    aws.sm.on(PutSecretValueCommand).rejects(awsError('InternalServiceError', 'service unavailable', 500));
    const err = (await store()
      .put(input())
      .catch((e: unknown) => e)) as TargetError;
    expect(err).toBeInstanceOf(TargetError);
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/secrets manager write tasklease\/run-7\/orders-db.read failed: InternalServiceError/);
    expect(err.message).not.toContain(VALUE.password);
  });
});

describe('SecretsManagerStore get/delete/exists', () => {
  it('reads the value back; a missing secret is undefined', async () => {
    await store().put(input());
    expect(await store().get('tasklease/run-7/orders-db.read')).toEqual(VALUE);
    expect(await store().get('tasklease/nope/x.y')).toBeUndefined();
  });

  it('deletes without a recovery window, idempotently, and is then gone', async () => {
    await store().put(input());
    await store().delete('tasklease/run-7/orders-db.read');
    expect(aws.sm.commandCalls(DeleteSecretCommand)[0]!.args[0].input).toEqual({
      SecretId: 'tasklease/run-7/orders-db.read',
      ForceDeleteWithoutRecovery: true,
    });
    expect(await store().exists('tasklease/run-7/orders-db.read')).toBe(false);
    await expect(store().delete('tasklease/run-7/orders-db.read')).resolves.toBeUndefined();
  });

  it('treats a secret scheduled for deletion as gone', async () => {
    aws.sm.on(DescribeSecretCommand).resolves({ Name: 'x', DeletedDate: new Date() });
    expect(await store().exists('x')).toBe(false);
    aws.sm.on(DescribeSecretCommand).resolves({ Name: 'x' });
    expect(await store().exists('x')).toBe(true);
  });
});
