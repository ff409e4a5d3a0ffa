/**
 * Process entry point of the HTTP API (`windfall serve`): `node dist/workers/api-server.js [--port 3000]`.
 */
import { main } from '../src/cli/main.js';

process.exitCode = await main([process.argv[0] ?? 'node', 'windfall', 'serve', ...process.argv.slice(2)]);
