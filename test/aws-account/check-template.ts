/**
 * cfn-lint and checkov on a synthesized template, with the acknowledgements of
 * infra/template-checks.yaml: `tsx test/aws-account/check-template.ts <venv> <template.json>`.
 * Fails on any finding not acknowledged and on any acknowledgement that matches no finding (so
 * the list cannot go stale). Both tools run unfiltered and the acknowledgements are applied here:
 * neither tool can skip a rule for some resources from the command line, and checkov does not
 * report what its --skip-check suppressed, which the staleness check needs.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import * as z from 'zod';

const ACKS_FILE = new URL('../../infra/template-checks.yaml', import.meta.url).pathname;

const AckSchema = z.strictObject({
  id: z.string().min(1),
  /** Logical-id prefixes; without them the rule is acknowledged for the whole template. */
  resources: z.array(z.string().min(1)).min(1).optional(),
  reason: z.string().min(20),
});
const AcksSchema = z.strictObject({ 'cfn-lint': z.array(AckSchema).default([]), checkov: z.array(AckSchema).default([]) });
type Ack = z.infer<typeof AckSchema>;

interface Finding {
  id: string;
  resource: string;
  message: string;
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  // Both exit non-zero when they find something; only output that is missing is an error.
  if (!r.stdout.trim() && r.status !== 0) throw new Error(`${cmd} failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

function cfnLint(venv: string, template: string): Finding[] {
  const out = run(join(venv, 'bin', 'cfn-lint'), ['--format', 'json', '--', template]);
  const parsed = JSON.parse(out.trim() || '[]') as { Rule: { Id: string }; Location: { Path: (string | number)[] }; Message: string }[];
  return parsed.map((f) => ({ id: f.Rule.Id, resource: String(f.Location.Path[1] ?? ''), message: f.Message }));
}

function checkov(venv: string, template: string): Finding[] {
  const args = ['-f', template, '--framework', 'cloudformation', '-o', 'json', '--quiet', '--compact', '--skip-download'];
  const parsed = JSON.parse(run(join(venv, 'bin', 'checkov'), args)) as unknown;
  const reports = (Array.isArray(parsed) ? parsed : [parsed]) as {
    results?: { failed_checks?: { check_id: string; resource: string; check_name: string }[] };
  }[];
  return reports.flatMap((r) =>
    (r.results?.failed_checks ?? []).map((f) => ({
      id: f.check_id,
      // "AWS::Lambda::Function.LogicalId"
      resource: f.resource.split('.').slice(1).join('.'),
      message: f.check_name,
    })),
  );
}

const covers = (ack: Ack, f: Finding) => ack.id === f.id && (!ack.resources || ack.resources.some((p) => f.resource.startsWith(p)));

function main(): void {
  const [venv, template] = process.argv.slice(2);
  if (!venv || !template) throw new Error('usage: check-template.ts <venv> <template.json>');
  const acks = AcksSchema.parse(parse(readFileSync(ACKS_FILE, 'utf8')));
  const problems: string[] = [];
  const counts: string[] = [];
  for (const [tool, scan] of [
    ['cfn-lint', cfnLint],
    ['checkov', checkov],
  ] as const) {
    const findings = scan(venv, template);
    for (const ack of acks[tool]) {
      if (!findings.some((f) => covers(ack, f))) {
        const scope = ack.resources ? ` [${ack.resources.join(', ')}]` : '';
        problems.push(`${tool} ${ack.id}${scope}: acknowledged but no longer reported; remove the entry`);
      }
    }
    const open = findings.filter((f) => !acks[tool].some((a) => covers(a, f)));
    for (const f of open) problems.push(`${tool} ${f.id} ${f.resource}: ${f.message}`);
    counts.push(`${tool} ${findings.length - open.length} acknowledged`);
  }
  if (problems.length) {
    console.error(
      `template checks: ${problems.length} problem(s); fix each or acknowledge it with a reason in infra/template-checks.yaml:`,
    );
    for (const p of problems) console.error(`  - ${p}`);
    process.exit(1);
  }
  console.log(`template checks: clean (${counts.join(', ')}; reasons in infra/template-checks.yaml)`);
}

main();
