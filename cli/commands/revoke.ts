import { UsageError, defineCommand } from '../command.ts';
import { TRANSPORT_HELP, TRANSPORT_OPTIONS, formatResult, sendOperatorRequest } from '../operator-client.ts';

const USAGE = `Usage: tasklease revoke (--task ID | --workload SPIFFE_ID) --reason TEXT [where]

Break-glass: revokes at once and proves the target rejects each credential.
  --task ID              one task's credentials
  --workload SPIFFE_ID   every live lease of the workload, and LOCKS it: new Task Started for it
                         are denied workload-locked until \`tasklease unlock\`
  --reason TEXT          why (required); recorded with who did it on each lease and on the lock

${TRANSPORT_HELP}
Exit code: 0 every credential proven rejected, 1 some still being proven (the broker keeps at
it), 2 a usage error or a refused request.
`;

export default defineCommand({
  usage: USAGE,
  options: { task: { type: 'string' }, workload: { type: 'string' }, reason: { type: 'string' }, ...TRANSPORT_OPTIONS },
  async run(values, io) {
    if ((values.task === undefined) === (values.workload === undefined)) throw new UsageError('give one of --task and --workload');
    if (!values.reason?.trim()) throw new UsageError('--reason is required: say why, it is recorded');
    const request =
      values.task !== undefined
        ? { action: 'revoke-task' as const, taskId: values.task, reason: values.reason }
        : { action: 'revoke-workload' as const, workload: values.workload as string, reason: values.reason };
    const response = await sendOperatorRequest(values, request);
    if (!response.ok) {
      io.err(`tasklease revoke: ${response.error}\n`);
      return 2;
    }
    io.out(formatResult(response.result));
    const result = response.result;
    const proven = 'revoked' in result && result.revoked.every((t) => t.credentials.every((c) => c.verified));
    return proven ? 0 : 1;
  },
});
