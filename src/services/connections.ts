import type { WindfallConfig } from '../config/config.js';
import type { WindfallDatabase } from '../db/database.js';
import { connectDatabase } from '../db/database.js';
import { FENCE_WAIT_MS } from '../db/fences.js';
import type { Logger } from '../log/logger.js';
import { connectRedis, type RedisClient } from './redis-connection.js';
import { checkPostgres, checkRedis } from './service-check.js';

/** Options of {@link openConnections}. */
export interface ConnectionOptions {
  /** PostgreSQL connections of the pool. Default ⌈concurrency / 2⌉ + 4. */
  readonly poolSize?: number;
  /** Check that Redis and PostgreSQL answer (and the schema exists) before returning. Default true. */
  readonly checkServices?: boolean;
  /** PostgreSQL schema to use (tests). */
  readonly schema?: string;
  /**
   * Give every statement of the pool a deadline of 5 s (its lock waits) + `WINDFALL_PG_SILENCE_MS`, past which its
   * connection counts as silent and is dropped with every one opened before it (a worker process's pool: its
   * statements are short; the long scans set their own). Default false.
   */
  readonly statementDeadlines?: boolean;
}

/** One process's PostgreSQL pool and Redis connection. */
export interface Connections {
  readonly database: WindfallDatabase;
  readonly redis: RedisClient;
}

/**
 * Opens the PostgreSQL pool and the Redis connection as `config` says and (by default) checks that both answer:
 * on a failed check both are closed again and the error (a {@link ServiceUnavailableError}) is thrown.
 */
export async function openConnections(
  config: WindfallConfig,
  logger: Logger,
  options: ConnectionOptions = {},
): Promise<Connections> {
  const database = connectDatabase(config.databaseUrl, {
    poolSize: options.poolSize ?? Math.ceil(config.concurrency / 2) + 4,
    logger,
    ...(options.schema ? { schema: options.schema } : {}),
    ...(options.statementDeadlines ? { statementDeadlineMs: FENCE_WAIT_MS + config.pgSilenceMs } : {}),
  });
  const redis = connectRedis(config.redisUrl, logger, 'windfall', {
    cluster: config.redisCluster,
    clusterNodes: config.redisClusterNodes,
  });
  if (options.checkServices ?? true) {
    try {
      await Promise.all([checkRedis(redis, config.redisUrl), checkPostgres(database.pool, config.databaseUrl)]);
    } catch (error) {
      redis.disconnect();
      await database.close().catch(() => undefined);
      throw error;
    }
  }
  return { database, redis };
}

/** QUIT, or a hard disconnect when Redis does not answer within 2 s (it may be down). */
export async function quitRedis(redis: RedisClient): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([redis.quit(), new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}
