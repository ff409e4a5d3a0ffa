import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../log/logger.js';
import type { Windfall } from '../../runtime/windfall.js';
import { withTimeout } from '../../concurrency/with-timeout.js';
import { ThrottledRefresh } from '../../metrics/throttled-refresh.js';
import { sampleQueueDepths } from '../../queue/queue-stats.js';

/** What the metrics route uses. */
export interface MetricsRouteDeps {
  readonly windfall: Windfall;
  readonly logger: Logger;
  /** Longest wait of a refresh per scrape; a scrape past it answers the last figures. */
  readonly readyTimeoutMs: number;
  /** Shortest time between two refreshes of the figures from Redis and PostgreSQL. Default `METRICS_REFRESH_MS`. */
  readonly metricsRefreshMs?: number | undefined;
}

/**
 * Registers `GET /metrics` (Prometheus text) without auth: the queue depths (Redis) and open dead letters
 * (PostgreSQL) it reports are refreshed at most every `metricsRefreshMs`, however often it is scraped.
 */
export function registerMetricsRoutes(app: FastifyInstance, deps: MetricsRouteDeps): void {
  const { windfall, logger, readyTimeoutMs, metricsRefreshMs } = deps;
  const metrics = windfall.metrics;
  // /metrics needs no token: what it reads from Redis and PostgreSQL is refreshed at most every metricsRefreshMs
  // (default 5 s) at a cost that does not grow with the queues, however often and by whom it is scraped
  const queueFigures = new ThrottledRefresh(
    () =>
      sampleQueueDepths(windfall.queues, metrics).catch((error: unknown) =>
        logger.debug({ err: error }, 'could not sample queue depths'),
      ),
    metricsRefreshMs,
  );
  const deadLetterFigures = new ThrottledRefresh(
    () =>
      windfall.deadLetters.openCounts().then(
        (counts) => {
          for (const [reason, count] of Object.entries(counts)) {
            metrics.deadLettersOpen.set({ reason }, count.entries);
            metrics.deadLetterRewardsOpen.set({ reason }, count.rewards);
          }
        },
        (error: unknown) => logger.debug({ err: error }, 'could not count open dead letters'),
      ),
    metricsRefreshMs,
  );
  app.get('/metrics', async (_request, reply) => {
    // a refresh that outlasts the timeout goes on, and the next scrape waits for it rather than starting another
    await Promise.all([
      withTimeout(queueFigures.run(), readyTimeoutMs).catch(() => undefined),
      withTimeout(deadLetterFigures.run(), readyTimeoutMs).catch(() => undefined),
    ]);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}
