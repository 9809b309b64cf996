import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SendTaskFailureCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { EventBridgePublisher, PublishError } from '../../shared/aws/eventbridge-publisher.ts';
import { secretsManagerResolver } from '../../shared/aws/secret-resolver.ts';
import { StepFunctionsTaskCallback } from '../../shared/aws/sfn-callback.ts';
import { ReverifyMessageSchema, SqsReverifyScheduler } from '../../shared/aws/sqs-reverify.ts';
import { ConfigError } from '../../shared/lease/errors.ts';
import { awsError, FakeAws, REGION } from './fake-aws.ts';

const aws = new FakeAws();
afterAll(() => aws.restore());
beforeEach(() => aws.reset());

describe('EventBridgePublisher', () => {
  it('puts one entry with source tasklease, the detail type and the JSON detail on the bus', async () => {
    const detail = {
      taskId: 't-1',
      grants: [],
      reason: { code: 'policy-no-rule' as const, message: 'no rule' },
      deniedAt: '2030-01-01T00:00:00.000Z',
    };
    await new EventBridgePublisher(new EventBridgeClient({ region: REGION }), 'tasklease-bus').publish({
      detailType: 'Lease Denied',
      detail,
    });
    expect(aws.eb.commandCalls(PutEventsCommand)[0]!.args[0].input).toEqual({
      Entries: [{ EventBusName: 'tasklease-bus', Source: 'tasklease', DetailType: 'Lease Denied', Detail: JSON.stringify(detail) }],
    });
  });

  it('fails when PutEvents rejects the entry (a 200 with FailedEntryCount)', async () => {
    aws.eb.on(PutEventsCommand).resolves({ FailedEntryCount: 1, Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }] });
    const p = new EventBridgePublisher(new EventBridgeClient({ region: REGION }), 'bus').publish({
      detailType: 'Lease Denied',
      detail: { taskId: 't', grants: [], reason: { code: 'invalid-event', message: 'x' }, deniedAt: '2030-01-01T00:00:00.000Z' },
    });
    await expect(p).rejects.toThrow(PublishError);
    await expect(p).rejects.toThrow(/InternalFailure try again/);
  });
});

describe('StepFunctionsTaskCallback', () => {
  const callback = () => new StepFunctionsTaskCallback(new SFNClient({ region: REGION }));

  it('answers success with the lease as JSON output and failure with the denial code and message', async () => {
    const output = {
      taskId: 't-1',
      expiresAt: '2030-01-01T00:15:00.000Z',
      secrets: [{ grant: 'orders-db.read', secretName: 'tasklease/t-1/orders-db.read' }],
    };
    await callback().success('token-1', output);
    expect(aws.sfn.commandCalls(SendTaskSuccessCommand)[0]!.args[0].input).toEqual({
      taskToken: 'token-1',
      output: JSON.stringify(output),
    });
    await callback().failure('token-2', 'policy-no-rule', 'no rule matches workload spiffe://x/y');
    expect(aws.sfn.commandCalls(SendTaskFailureCommand)[0]!.args[0].input).toEqual({
      taskToken: 'token-2',
      error: 'policy-no-rule',
      cause: 'no rule matches workload spiffe://x/y',
    });
  });

  it('swallows tokens the state machine gave up on, and throws other errors for a retry', async () => {
    aws.sfn.on(SendTaskSuccessCommand).rejects(awsError('TaskTimedOut', 'Task Timed Out'));
    await expect(callback().success('old', {})).resolves.toBeUndefined();
    aws.sfn.on(SendTaskSuccessCommand).rejects(awsError('ServiceUnavailable', 'down', 503));
    await expect(callback().success('t', {})).rejects.toThrow(/down/);
  });

  it('bounds error and cause to the Step Functions limits', async () => {
    await callback().failure('t', 'e'.repeat(300), 'c'.repeat(40_000));
    const input = aws.sfn.commandCalls(SendTaskFailureCommand)[0]!.args[0].input;
    expect(input.error).toHaveLength(256);
    expect(input.cause).toHaveLength(32_768);
  });
});

describe('SqsReverifyScheduler', () => {
  it('delays with DelaySeconds, rounded up, and hops delays beyond 15 minutes', async () => {
    const now = 1_900_000_000_000;
    const s = new SqsReverifyScheduler(
      new SQSClient({ region: REGION }),
      'https://sqs.eu-west-1.amazonaws.com/123456789012/reverify',
      () => now,
    );
    await s.schedule('t-1', { target: 'ops', access: 'deploy' }, 2_500);
    await s.schedule('t-2', { target: 'ops', access: 'deploy' }, 3_600_000);
    const [a, b] = aws.sqs.commandCalls(SendMessageCommand).map((c) => c.args[0].input);
    expect(a).toEqual({
      QueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/reverify',
      MessageBody: JSON.stringify({ taskId: 't-1', grant: { target: 'ops', access: 'deploy' } }),
      DelaySeconds: 3,
    });
    expect(b!.DelaySeconds).toBe(900);
    expect(ReverifyMessageSchema.parse(JSON.parse(b!.MessageBody!))).toEqual({
      taskId: 't-2',
      grant: { target: 'ops', access: 'deploy' },
      notBefore: now + 3_600_000,
    });
  });
});

describe('secretsManagerResolver (database admin secrets)', () => {
  it('reads the password of a JSON secret (RDS-managed form), a named field, or a plain string; cached', async () => {
    aws.addSecret('rds!db-1', JSON.stringify({ username: 'postgres', password: 'Adm1n-Passw0rd' }));
    aws.addSecret('plain', 'Pl41n-Passw0rd');
    const remembered: string[] = [];
    const resolve = secretsManagerResolver(new SecretsManagerClient({ region: REGION }), { onValue: (v) => remembered.push(v) });
    expect(await resolve('rds!db-1')).toBe('Adm1n-Passw0rd');
    expect(await resolve('rds!db-1#username')).toBe('postgres');
    expect(await resolve('plain')).toBe('Pl41n-Passw0rd');
    expect(await resolve('rds!db-1')).toBe('Adm1n-Passw0rd');
    expect(aws.sm.commandCalls(GetSecretValueCommand)).toHaveLength(3);
    expect(aws.sm.commandCalls(GetSecretValueCommand)[0]!.args[0].input).toEqual({ SecretId: 'rds!db-1' });
    expect(remembered).toContain('Adm1n-Passw0rd');
  });

  it('names the secret, not its value, when it cannot be used; a failure is not cached', async () => {
    aws.addSecret('weird', JSON.stringify({ user: 'x' }));
    const resolve = secretsManagerResolver(new SecretsManagerClient({ region: REGION }));
    await expect(resolve('missing')).rejects.toThrow(ConfigError);
    await expect(resolve('weird')).rejects.toThrow(/secret weird has no string field 'password'/);
    aws.addSecret('missing', 'N0w-Th3re');
    expect(await resolve('missing')).toBe('N0w-Th3re');
  });
});
