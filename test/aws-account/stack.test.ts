/** What `cdk deploy` made in the emulated account, read back from its APIs (not from the template). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DescribeEventBusCommand, EventBridgeClient, ListRulesCommand } from '@aws-sdk/client-eventbridge';
import { GetFunctionConfigurationCommand, LambdaClient, ListEventSourceMappingsCommand } from '@aws-sdk/client-lambda';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, inject, it } from 'vitest';
import { ACCOUNT, REGION, roleArn } from './config.ts';
import { clientOptions } from './sdk.ts';

const endpoint = inject('motoEndpoint');
const deployment = inject('deployment');
const template = JSON.parse(readFileSync(join(inject('workDir'), 'cdk.out', 'TaskLease.template.json'), 'utf8')) as {
  Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
};
const ofType = (type: string) => Object.entries(template.Resources).filter(([, r]) => r.Type === type);
const physical = (logicalId: string) => deployment.resources.find((r) => r.logicalId === logicalId)!.physicalId;

describe('the stack in the emulated account', () => {
  it('every template resource but the CDK metadata and the bootstrap-only ones is created', () => {
    expect(deployment.resources.every((r) => r.status === 'CREATE_COMPLETE')).toBe(true);
    // AWS::CDK::Metadata is CDK's usage report: moto has no model for it (nothing to emulate).
    expect(Object.keys(deployment.skipped)).toEqual(Object.keys(deployment.skipped).filter((t) => t === 'AWS::CDK::Metadata'));
  });

  it('the stack outputs name the deployed resources', () => {
    const logicalOf = (type: string) => ofType(type).map(([id]) => id);
    const [bus] = logicalOf('AWS::Events::EventBus');
    const [ledger] = logicalOf('AWS::DynamoDB::Table');
    const [key] = logicalOf('AWS::KMS::Key');
    expect(deployment.outputs.BusName).toBe(physical(bus!));
    expect(deployment.outputs.BusArn).toBe(`arn:aws:events:${REGION}:${ACCOUNT}:event-bus/${physical(bus!)}`);
    expect(deployment.outputs.LedgerTableName).toBe(physical(ledger!));
    expect(deployment.outputs.KeyArn).toBe(`arn:aws:kms:${REGION}:${ACCOUNT}:key/${physical(key!)}`);
    const startedRole = physical(logicalOf('AWS::IAM::Role').find((id) => id.startsWith('TaskLeaseTaskStartedRole'))!);
    expect(deployment.outputs.TaskStartedRoleArn).toBe(roleArn(startedRole));
  });

  it('functions carry the template memory, timeout, handler and environment', async () => {
    const lambda = new LambdaClient(clientOptions(endpoint));
    for (const [id, r] of ofType('AWS::Lambda::Function')) {
      const cfg = await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: physical(id) }));
      expect(cfg.MemorySize).toBe(r.Properties.MemorySize);
      expect(cfg.Timeout).toBe(r.Properties.Timeout);
      expect(cfg.Handler).toBe('index.handler');
      expect(Object.keys(cfg.Environment?.Variables ?? {})).toEqual(
        expect.arrayContaining(['TABLE_NAME', 'EVENT_BUS_NAME', 'TASKLEASE_CONFIG', 'REVERIFY_QUEUE_URL', 'BROKER_PRINCIPAL_ARNS']),
      );
    }
  });

  it('queue event sources report partial batch failures with the template batch size', async () => {
    const lambda = new LambdaClient(clientOptions(endpoint));
    const mappings = (await lambda.send(new ListEventSourceMappingsCommand({}))).EventSourceMappings ?? [];
    expect(mappings).toHaveLength(ofType('AWS::Lambda::EventSourceMapping').length);
    for (const m of mappings) {
      expect(m.BatchSize).toBe(10);
      expect(m.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
    }
  });

  it('the bus policy statements and the queues visibility timeouts read back as deployed', async () => {
    const events = new EventBridgeClient(clientOptions(endpoint));
    const bus = await events.send(new DescribeEventBusCommand({ Name: deployment.outputs.BusName }));
    const sids = (JSON.parse(bus.Policy ?? '{"Statement":[]}') as { Statement: { Sid: string }[] }).Statement.map((s) => s.Sid).sort();
    expect(sids).toEqual(
      ofType('AWS::Events::EventBusPolicy')
        .map(([, r]) => r.Properties.StatementId)
        .sort(),
    );
    const rules = (await events.send(new ListRulesCommand({ EventBusName: deployment.outputs.BusName }))).Rules ?? [];
    // Not the rules a test adds (test-*): those of the template.
    expect(rules.filter((r) => !r.Name?.startsWith('test-'))).toHaveLength(ofType('AWS::Events::Rule').length);
    const sqs = new SQSClient(clientOptions(endpoint));
    for (const [id, r] of ofType('AWS::SQS::Queue')) {
      const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: physical(id), AttributeNames: ['All'] }));
      if (r.Properties.VisibilityTimeout !== undefined)
        expect(Number(attrs.Attributes?.VisibilityTimeout)).toBe(r.Properties.VisibilityTimeout);
    }
  });
});
