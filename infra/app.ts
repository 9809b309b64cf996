import { resolve } from 'node:path';
import { ConfigError } from '../shared/lease/errors.ts';
import { loadConfig } from '../shared/policy/config.ts';
import { buildApp } from './stack.ts';
import { missingFunctionEntries } from './task-lease.ts';

/*
 * `npx cdk synth|deploy` (cdk.json runs this with tsx). The config comes from
 * $TASKLEASE_CONFIG_FILE, else ./tasklease.config.yaml (the local demo's, which synth refuses:
 * its trust bundle exists only in the local runtime); the stack name from $TASKLEASE_STACK_NAME
 * (default TaskLease); alarms notify the SNS topic $TASKLEASE_ALARM_TOPIC_ARN when set.
 */
const DEFAULT_FILE_HINT =
  "TASKLEASE_CONFIG_FILE is not set, so this was ./tasklease.config.yaml, the local demo's config (npm start). " +
  'To deploy, copy examples/aws/tasklease.config.yaml, put in your trust domain, targets and roles, and run ' +
  'TASKLEASE_CONFIG_FILE=./my.tasklease.yaml npx cdk deploy';

const fromDefault = process.env.TASKLEASE_CONFIG_FILE === undefined;
const configFile = resolve(process.env.TASKLEASE_CONFIG_FILE ?? 'tasklease.config.yaml');

const missing = missingFunctionEntries();
if (missing.length > 0) throw new Error(`Lambda entry files missing: ${missing.join(', ')}`);

const account = process.env.CDK_DEFAULT_ACCOUNT;
const region = process.env.CDK_DEFAULT_REGION;
try {
  const config = await loadConfig(configFile);
  const { app } = buildApp({
    config,
    stackId: process.env.TASKLEASE_STACK_NAME ?? 'TaskLease',
    // Environment-agnostic unless the CLI knows the target account (no lookups are needed); when it
    // does, synth also refuses target resources of another account.
    stackProps: {
      ...(account && region ? { env: { account, region } } : {}),
      ...(process.env.TASKLEASE_ALARM_TOPIC_ARN ? { alarmTopicArn: process.env.TASKLEASE_ALARM_TOPIC_ARN } : {}),
    },
  });
  app.synth();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  // A config problem is the user's to fix: its message names the field; no stack trace.
  process.stderr.write(`tasklease: ${configFile}: ${err.message}\n${fromDefault ? `${DEFAULT_FILE_HINT}\n` : ''}`);
  process.exit(1);
}
