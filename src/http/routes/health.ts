import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../log/logger.js';
import type { Windfall } from '../../runtime/windfall.js';
import { ReadinessChecks } from './readiness.js';

/** What the health routes use. */
export interface HealthRouteDeps {
  readonly windfall: Windfall;
  readonly logger: Logger;
  /** Longest wait of a readiness check per service. */
  readonly readyTimeoutMs: number;
}

/**
 * Registers `GET /healthz` (liveness: always 200) and `GET /readyz` (200 when Redis and PostgreSQL answer within
 * `readyTimeoutMs`, else 503) without auth; the readiness checks are closed with the server.
 */
export function registerHealthRoutes(
  app: FastifyInstance,
  { windfall, logger, readyTimeoutMs }: HealthRouteDeps,
): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  // the answer names the failing service only; the driver's error (hosts, user names) is logged once per change
  const readiness = new ReadinessChecks(windfall, logger, readyTimeoutMs);
  app.addHook('onClose', async () => readiness.close());
  app.get('/readyz', async (_request, reply) => {
    const { ready, checks } = await readiness.check();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks });
  });
}
