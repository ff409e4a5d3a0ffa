/**
 * Process entry point of a reward worker, the image's default command (Dockerfile; the `worker` service of
 * docker-compose.yml): `node dist/workers/reward-worker.js [--shards 0-3] [--concurrency 4] [--metrics-port 9464]`.
 * Configuration from the environment; every shard unless `--shards` names some. The same process as `windfall worker`,
 * behind the same guards (`src/cli/process-entry.ts`): exit 0 after a drain on SIGINT/SIGTERM, 1 when Redis or
 * PostgreSQL cannot be used (the message names the place, never the password), 2 for a bad setting.
 */
import { runAsProcess } from '../src/cli/process-entry.js';

await runAsProcess(['worker', ...process.argv.slice(2)]);
