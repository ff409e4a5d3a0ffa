/**
 * Process entry point of the HTTP API (the `api` service of docker-compose.yml):
 * `node dist/workers/api-server.js [--port 3000] [--host 0.0.0.0]`. The same process as `windfall serve`, behind the
 * same guards (`src/cli/process-entry.ts`): exit 0 after SIGINT/SIGTERM, 1 when Redis or PostgreSQL cannot be used
 * (the message names the place, never the password), 2 without WINDFALL_API_TOKEN or for a bad setting.
 */
import { runAsProcess } from '../src/cli/process-entry.js';

await runAsProcess(['serve', ...process.argv.slice(2)]);
