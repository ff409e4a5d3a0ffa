import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

/**
 * Serves `GET /metrics` (Prometheus text format) from `registry` on `port` (all interfaces), for worker processes.
 * `collect` runs before each scrape (to sample queue depths). Resolves once listening.
 */
export async function startMetricsServer(
  registry: Registry,
  port: number,
  collect?: () => Promise<void>,
): Promise<Server> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    (async () => {
      await collect?.().catch(() => undefined);
      const body = await registry.metrics();
      response.writeHead(200, { 'content-type': registry.contentType }).end(body);
    })().catch((error: unknown) => {
      response.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(error as Error).message}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve());
  });
  return server;
}
