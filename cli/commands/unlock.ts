import { UsageError, defineCommand } from '../command.ts';
import { TRANSPORT_HELP, TRANSPORT_OPTIONS, formatResult, sendOperatorRequest } from '../operator-client.ts';

const USAGE = `Usage: tasklease unlock --workload SPIFFE_ID --reason TEXT [where]

Lifts a break-glass lock (\`tasklease revoke --workload\`): the workload's Task Started are
answered again. Who and why are recorded on the lock.

${TRANSPORT_HELP}`;

export default defineCommand({
  usage: USAGE,
  options: { workload: { type: 'string' }, reason: { type: 'string' }, ...TRANSPORT_OPTIONS },
  async run(values, io) {
    if (values.workload === undefined) throw new UsageError('--workload is required');
    if (!values.reason?.trim()) throw new UsageError('--reason is required: say why, it is recorded');
    const response = await sendOperatorRequest(values, { action: 'unlock', workload: values.workload, reason: values.reason });
    if (!response.ok) {
      io.err(`tasklease unlock: ${response.error}\n`);
      return 2;
    }
    io.out(formatResult(response.result));
    return 0;
  },
});
