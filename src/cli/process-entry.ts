import { main } from './main.js';
import { installProcessGuards } from './support/process-guards.js';

/**
 * How long a finished command waits for its sockets to close before the process exits anyway: a peer that went
 * silent (it never answers the goodbye) must not keep the process up. 5000 ms.
 */
const EXIT_GRACE_MS = 5000;

/**
 * Runs one `windfall` command as the whole process, the way every entry point does (`bin/windfall.js`,
 * `workers/reward-worker.ts`, `workers/api-server.ts`): the process guards first ({@link installProcessGuards}:
 * what Node and the libraries print about errors is rendered without credentials), then the command, whose exit code
 * becomes the process's; SIGINT/SIGTERM are the command's own (a worker and `serve` drain, then exit 0).
 * @param args the command and its arguments, as after `windfall` on a command line (e.g. `['worker', '--shards', '0-3']`).
 */
export async function runAsProcess(args: readonly string[]): Promise<void> {
  installProcessGuards();
  process.exitCode = await main([process.argv[0] ?? 'node', 'windfall', ...args]);
  setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
}
