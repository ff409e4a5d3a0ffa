import type { WindfallConfig } from '../config/config.js';
import type { WindfallDatabase } from '../db/database.js';
import { connectDatabase } from '../db/database.js';
import { FENCE_WAIT_MS } from '../db/fences.js';
import type { Logger } from '../log/logger.js';
import { connectRedis, type RedisClient, type RedisConnectOptions } from './redis-connection.js';
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
   * Give every statement of the pool a deadline of what its own work may take (the process's role:
   * {@link STATEMENT_ALLOWANCE_MS}) + `WINDFALL_PG_SILENCE_MS`, past which its connection counts as silent and is
   * dropped with every one opened before it. Default: no deadline (statements wait as long as TCP lets them: one-off
   * commands, whose scans may take minutes).
   */
  readonly statementDeadlines?: keyof typeof STATEMENT_ALLOWANCE_MS;
}

/** What a statement's own work may take, by the role of the process (ms), before silence is counted. */
export const STATEMENT_ALLOWANCE_MS = {
  /** A worker's statements are short: their lock waits (5 s, {@link FENCE_WAIT_MS}); its long scans set their own. */
  worker: FENCE_WAIT_MS,
  /**
   * `windfall serve`'s: a minute, for those that wait for a worker's statements to let go of a batch (a cancel, a
   * revert) and the reads over large tables (a campaign's ledger sums, the console's lists); the two statements of a
   * batch's staging that read the whole batch set their own, longer deadline. A request caught on a silent connection
   * is answered 503 after it, so is every other request then in flight on a connection as old, and the pool starts
   * afresh.
   */
  server: 60_000,
} as const;

/** `windfall serve`'s longest wait for a PostgreSQL connection (new, or a free one of the pool), ms. */
const SERVER_CONNECT_TIMEOUT_MS = 10_000;

/** One process's PostgreSQL pool and Redis connection. */
export interface Connections {
  readonly database: WindfallDatabase;
  readonly redis: RedisClient;
}

/** How `config` says to reach Redis besides its URL: a cluster, sentinels, or neither. */
export function redisConnectOptions(config: WindfallConfig): RedisConnectOptions {
  return {
    cluster: config.redisCluster,
    clusterNodes: config.redisClusterNodes,
    sentinels: config.redisSentinels,
    sentinelName: config.redisSentinelName,
    sentinelPassword: config.redisSentinelPassword,
    silenceMs: config.redisSilenceMs,
  };
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
    ...(options.statementDeadlines !== undefined
      ? { statementDeadlineMs: STATEMENT_ALLOWANCE_MS[options.statementDeadlines] + config.pgSilenceMs }
      : {}),
    // a request waits for a connection no longer than it did without deadlines: a 503 soon is worth more to an HTTP
    // client than an answer after the deadline
    ...(options.statementDeadlines === 'server' ? { connectTimeoutMs: SERVER_CONNECT_TIMEOUT_MS } : {}),
  });
  const target = redisConnectOptions(config);
  const redis = connectRedis(config.redisUrl, logger, 'windfall', target);
  if (options.checkServices ?? true) {
    try {
      await Promise.all([
        checkRedis(redis, config.redisUrl, undefined, target),
        checkPostgres(database.pool, config.databaseUrl),
      ]);
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
