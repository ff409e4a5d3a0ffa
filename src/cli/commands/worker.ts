import type { Server } from 'node:http';
import { parseShardList } from '../../config/env-values.js';
import { startMetricsServer } from '../../metrics/metrics-server.js';
import { ThrottledRefresh } from '../../metrics/throttled-refresh.js';
import type { Windfall } from '../../runtime/windfall.js';
import { sampleQueueDepths } from '../../queue/queue-stats.js';
import { assertNoStrandedChunks } from '../../queue/stranded-chunks.js';
import { isTransientDatabaseError } from '../../db/pg-errors.js';
import { retryConflicts } from '../../db/retry.js';

/** Flags of `windfall worker`. */
export interface WorkerFlags {
  readonly shards?: string;
  readonly metricsPort?: number;
}

/**
 * Runs a worker until SIGINT/SIGTERM (refusing to start when open chunks sit on shards beyond `WINDFALL_SHARDS`), then drains (in-flight users finish within WINDFALL_SHUTDOWN_TIMEOUT_MS)
 * and resolves. A second signal exits at once (code 1).
 */
export async function runWorker(windfall: Windfall, flags: WorkerFlags): Promise<void> {
  const shards =
    flags.shards === undefined ? undefined : parseShardList('--shards', flags.shards, windfall.config.shards);
  // a lowered WINDFALL_SHARDS would leave open chunks in queues no worker reads: refuse (exit 2) and say what to do
  // (a backend terminated or restarting right then is tried again, as the worker's own steps are)
  await retryConflicts(() => assertNoStrandedChunks(windfall.database.pool, windfall.config.shards), {
    retryable: isTransientDatabaseError,
    delaysMs: [100, 500, 1000, 2000, 4000],
  });
  const worker = windfall.createWorker(shards ? { shards } : {});
  let metricsServer: Server | undefined;
  if (flags.metricsPort !== undefined) {
    // queue depths are read from Redis at most every METRICS_REFRESH_MS, however often the port is scraped
    const queueDepths = new ThrottledRefresh(() => sampleQueueDepths(windfall.queues, windfall.metrics));
    metricsServer = await startMetricsServer(windfall.metrics.registry, flags.metricsPort, () => queueDepths.run());
    windfall.logger.info({ port: flags.metricsPort }, 'metrics on /metrics');
  }
  const stopped = new Promise<string>((resolve) => {
    let signals = 0;
    const onSignal = (signal: string): void => {
      signals += 1;
      if (signals > 1) {
        windfall.logger.error({ signal }, 'second signal: exiting without draining');
        process.exit(1);
      }
      resolve(signal);
    };
    process.on('SIGINT', () => onSignal('SIGINT'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
  });
  await worker.start();
  // with WINDFALL_WEBHOOK_URL: deliver batch events too (after the shard workers: a delivery never holds up rewards)
  const delivery = await windfall.startEventDelivery();
  const signal = await stopped;
  windfall.logger.info({ signal, timeoutMs: windfall.config.shutdownTimeoutMs }, 'stopping: draining in-flight users');
  await worker.close(windfall.config.shutdownTimeoutMs);
  await delivery?.close();
  if (metricsServer) await new Promise((resolve) => metricsServer.close(resolve));
}
