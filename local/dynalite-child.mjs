// dynalite in its own process for the local runtime: the ledger's CPU and memory stay off the
// broker's event loop and heap. Prints its port once listening; exits when its parent does
// (however the parent dies, the parent's end of stdin closes).
import { createRequire } from 'node:module';

const dynalite = createRequire(import.meta.url)('dynalite');
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
process.stdin.on('end', () => process.exit(0));
// A terminal's Ctrl-C reaches the whole process group: the parent stops us after its own cleanup,
// which still needs the ledger.
process.on('SIGINT', () => undefined);
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
