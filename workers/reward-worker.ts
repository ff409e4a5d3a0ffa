/**
 * Process entry point of a reward worker (the container's command): configuration from the environment,
 * every shard unless WINDFALL_WORKER_SHARDS-style selection is given on the command line (`--shards 0-3`).
 * Equivalent to `windfall worker`; it exists so deployments can run `node dist/workers/reward-worker.js`.
 */
import { main } from '../src/cli/main.js';

process.exitCode = await main([process.argv[0] ?? 'node', 'windfall', 'worker', ...process.argv.slice(2)]);
