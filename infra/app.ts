import { resolve } from 'node:path';
import { loadConfig } from '../shared/policy/config.ts';
import { buildApp } from './stack.ts';
import { missingFunctionEntries } from './task-lease.ts';

/*
 * `npx cdk synth|deploy` (cdk.json runs this with tsx). The config comes from
 * $TASKLEASE_CONFIG_FILE, else ./tasklease.config.yaml; the stack name from $TASKLEASE_STACK_NAME
 * (default TaskLease); alarms notify the SNS topic $TASKLEASE_ALARM_TOPIC_ARN when set.
 */
const configFile = resolve(process.env.TASKLEASE_CONFIG_FILE ?? 'tasklease.config.yaml');
const config = await loadConfig(configFile);

const missing = missingFunctionEntries();
if (missing.length > 0) throw new Error(`Lambda entry files missing: ${missing.join(', ')}`);

const account = process.env.CDK_DEFAULT_ACCOUNT;
const region = process.env.CDK_DEFAULT_REGION;
const { app } = buildApp({
  config,
  stackId: process.env.TASKLEASE_STACK_NAME ?? 'TaskLease',
  // Environment-agnostic unless the CLI knows the target account (no lookups are needed).
  stackProps: {
    ...(account && region ? { env: { account, region } } : {}),
    ...(process.env.TASKLEASE_ALARM_TOPIC_ARN ? { alarmTopicArn: process.env.TASKLEASE_ALARM_TOPIC_ARN } : {}),
  },
});
app.synth();
