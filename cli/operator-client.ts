import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { OperatorResult, UnsignedOperatorRequest } from '../shared/broker/operator.ts';
import { UsageError } from './command.ts';

/** Where an operator request goes: the AWS operator function, or a held local runtime's endpoint. */
export const TRANSPORT_OPTIONS = {
  function: { type: 'string' },
  region: { type: 'string' },
  'operator-url': { type: 'string' },
  'operator-file': { type: 'string' },
  by: { type: 'string' },
} as const;

export const TRANSPORT_HELP = `Where (one of):
  --function NAME|ARN   the deployed operator function (stack output OperatorFunctionName);
                        your AWS credentials must be allowed to invoke it (the construct's
                        \`operators\` prop). "by" is recorded as your STS caller identity ARN.
    --region REGION     overrides the SDK's default region
  --operator-url URL    a local runtime's operator endpoint (\`npm start -- --hold\` prints it);
                        its token is read from --operator-file (default .tasklease/operator.json)
  (neither)             the local endpoint of .tasklease/operator.json
  --by NAME             locally: who you are (default: your user name)
`;

export interface TransportValues {
  function?: string;
  region?: string;
  'operator-url'?: string;
  'operator-file'?: string;
  by?: string;
}

export type OperatorResponse = { ok: true; result: OperatorResult } | { ok: false; error: string };

/** Sends one request; `by` is filled in here, from the caller's verified AWS identity or the local user. */
export async function sendOperatorRequest(values: TransportValues, request: UnsignedOperatorRequest): Promise<OperatorResponse> {
  if (values.function !== undefined) {
    if (values.by !== undefined) throw new UsageError('--by is for the local runtime; in AWS "by" is your caller identity');
    return invokeFunction(values.function, values.region, request);
  }
  const local = localEndpoint(values);
  const by = values.by ?? userInfo().username;
  const res = await fetch(local.url, {
    method: 'POST',
    headers: { authorization: `Bearer ${local.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ...request, by }),
  }).catch((err: unknown) => {
    throw new Error(
      `cannot reach the local operator endpoint ${local.url} (${(err as Error).message}); is \`npm start -- --hold\` running?`,
    );
  });
  return (await res.json()) as OperatorResponse;
}

function localEndpoint(values: TransportValues): { url: string; token: string } {
  const file = values['operator-file'] ?? '.tasklease/operator.json';
  let saved: { url?: unknown; token?: unknown };
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as typeof saved;
  } catch {
    throw new UsageError(`no operator endpoint: pass --function (AWS), or start the local runtime with --hold (it writes ${file})`);
  }
  if (typeof saved.token !== 'string' || typeof saved.url !== 'string') throw new UsageError(`${file} has no url and token`);
  return { url: values['operator-url'] ?? saved.url, token: saved.token };
}

async function invokeFunction(functionName: string, region: string | undefined, request: UnsignedOperatorRequest) {
  // Loaded only here: the local path and --help need no AWS SDK.
  const [{ LambdaClient, InvokeCommand }, { STSClient, GetCallerIdentityCommand }] = await Promise.all([
    import('@aws-sdk/client-lambda'),
    import('@aws-sdk/client-sts'),
  ]);
  const { Arn } = await new STSClient({ region }).send(new GetCallerIdentityCommand({}));
  const out = await new LambdaClient({ region }).send(
    new InvokeCommand({ FunctionName: functionName, Payload: Buffer.from(JSON.stringify({ ...request, by: Arn ?? 'unknown' })) }),
  );
  const text = Buffer.from(out.Payload ?? new Uint8Array()).toString('utf8');
  if (out.FunctionError) return { ok: false as const, error: `the operator function failed (${out.FunctionError}): ${text.slice(0, 500)}` };
  return JSON.parse(text) as OperatorResponse;
}

/** The answer as people read it: one line per revoked task, each credential's state. */
export function formatResult(result: OperatorResult): string {
  const lines: string[] = [];
  if (result.action === 'unlock') {
    lines.push(
      result.unlocked && result.lock
        ? `unlocked ${result.workload} (locked by ${result.lock.by} at ${result.lock.lockedAt}: ${result.lock.reason})`
        : `${result.workload} was not locked; nothing changed`,
    );
    return `${lines.join('\n')}\n`;
  }
  if (result.action === 'revoke-workload') lines.push(`locked ${result.workload}: new Task Started for it are denied workload-locked`);
  if (result.action === 'revoke-task' && !result.found) lines.push(`no lease for task ${result.taskId}; nothing to revoke`);
  if (result.revoked.length === 0 && result.action === 'revoke-workload') lines.push('no live lease to revoke');
  for (const t of result.revoked) {
    const creds = t.credentials.map((c) => `${c.grant} ${c.verified ? 'proven rejected' : c.state}`).join(', ');
    lines.push(`${t.taskId}: ${t.status}${creds ? ` (${creds})` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
