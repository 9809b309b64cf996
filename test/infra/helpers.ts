import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { App, AppProps } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as cxapi from 'aws-cdk-lib/cx-api';
import { loadConfig, parseConfig } from '../../shared/policy/config.ts';
import type { TaskLeaseConfig } from '../../shared/policy/config.ts';
import { buildApp } from '../../infra/stack.ts';
import type { BuildAppOptions } from '../../infra/stack.ts';
import type { TaskLeaseStack } from '../../infra/stack.ts';

export const FIXTURE_CONFIG = new URL('./fixtures/aws.config.yaml', import.meta.url).pathname;

export const loadFixtureConfig = (): Promise<TaskLeaseConfig> => loadConfig(FIXTURE_CONFIG);

export interface Synthesized {
  app: App;
  stack: TaskLeaseStack;
  template: Template;
  /** The cloud assembly directory (assets, validation report). */
  outdir: string;
  report: ValidationReport;
  cleanup(): void;
}

export interface ValidationReport {
  pluginReports: { pluginName: string; conclusion: string; violations: { ruleName: string; severity: string }[] }[];
}

/**
 * Builds the app exactly as infra/app.ts does (cdk-nag plugin included) and synthesizes it once.
 * `bundle: false` skips esbuild (CDK's own `aws:cdk:bundling-stacks` switch) for tests that only
 * look at the template.
 */
export function synth(
  options: Omit<BuildAppOptions, 'appProps'> & { bundle?: boolean; appProps?: AppProps; extend?: (stack: TaskLeaseStack) => void },
): Synthesized {
  const outdir = mkdtempSync(join(tmpdir(), 'tasklease-cdk-'));
  const context = { ...(options.appProps?.context ?? {}), ...(options.bundle === false ? { 'aws:cdk:bundling-stacks': [] } : {}) };
  const cleanup = () => rmSync(outdir, { recursive: true, force: true });
  try {
    const { app, stack } = buildApp({ ...options, appProps: { ...options.appProps, outdir, context } });
    options.extend?.(stack);
    const assembly = app.synth();
    const template = Template.fromStack(stack);
    const report = JSON.parse(readFileSync(join(assembly.directory, cxapi.VALIDATION_REPORT_FILE), 'utf8')) as ValidationReport;
    return { app, stack, template, outdir, report, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}

/** A minimal valid config, adjustable per test. */
export function configFrom(yamlText: string): TaskLeaseConfig {
  return parseConfig(yamlText, 'test config');
}

export type Json = Record<string, unknown>;

export interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action: string | string[];
  Resource?: unknown;
  Principal?: unknown;
  Condition?: Json;
}

export const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Every identity-policy statement of the template, with the logical ids of the roles it is attached to. */
export function identityStatements(template: Template): { policyId: string; roles: string[]; statement: Statement }[] {
  const out: { policyId: string; roles: string[]; statement: Statement }[] = [];
  for (const [policyId, res] of Object.entries(template.findResources('AWS::IAM::Policy'))) {
    const props = res.Properties as { PolicyDocument: { Statement: Statement[] }; Roles?: { Ref: string }[] };
    const roles = (props.Roles ?? []).map((r) => r.Ref);
    for (const statement of props.PolicyDocument.Statement) out.push({ policyId, roles, statement });
  }
  for (const [roleId, res] of Object.entries(template.findResources('AWS::IAM::Role'))) {
    const props = res.Properties as { Policies?: { PolicyDocument: { Statement: Statement[] } }[] };
    for (const p of props.Policies ?? [])
      for (const statement of p.PolicyDocument.Statement) out.push({ policyId: roleId, roles: [roleId], statement });
  }
  return out;
}

/** The CloudWatch dashboard body as one string (Fn::Join parts with tokens rendered as JSON). */
export function dashboardBody(template: Template): string {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  const body = (dashboards[0]?.Properties as { DashboardBody: unknown }).DashboardBody;
  if (typeof body === 'string') return body;
  const join = (body as { 'Fn::Join': [string, unknown[]] })['Fn::Join'];
  return join[1].map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(join[0]);
}
