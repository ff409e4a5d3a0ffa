import pg from 'pg';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import { endPool, isRetired, retireOnSilence, trackClients } from './silent-connections.js';

const INT8_OID = 20;

/** int8 as `bigint` (money never passes through a float); every other type as pg parses it by default. */
const windfallTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if (oid === INT8_OID && format !== 'binary') return (value: string) => BigInt(value);
    return pg.types.getTypeParser(oid, format) as (value: string) => unknown;
  },
};

/** Options of {@link connectDatabase}. */
export interface DatabaseOptions {
  /** Most connections the pool opens. Default 10. */
  readonly poolSize?: number;
  /** Shown in `pg_stat_activity.application_name`. Default `windfall`. */
  readonly applicationName?: string;
  /** PostgreSQL schema searched first (tests isolate themselves in one). Default: the server's `search_path`. */
  readonly schema?: string;
  /** Default: a silent logger. */
  readonly logger?: Logger;
  /**
   * Every statement without an answer after this long (unless it sets its own `query_timeout`) counts its connection
   * as silent, and the pool drops it with every connection opened before it (see `silent-connections.ts`), ms.
   * Default: none (statements wait as long as TCP lets them).
   */
  readonly statementDeadlineMs?: number;
  /**
   * Longest wait for a connection (a new one to be made, or one of the pool to be free), ms. Default 10,000; with
   * {@link statementDeadlineMs}, that deadline + 5 s (so that statements holding every connection are found silent,
   * and named so, before this wait gives up) unless given here.
   */
  readonly connectTimeoutMs?: number;
}

/**
 * A connection pool to the ledger database. Close it once. (Migrations build their Kysely instance over it on demand,
 * and the operator's reads compile their queries with Kysely loaded on first use, `query-builder.ts`: the commands
 * that do neither do not load Kysely.)
 */
export interface WindfallDatabase {
  readonly pool: pg.Pool;
  close(): Promise<void>;
}

/** Opens a pool to `url` (nothing connects until the first query). Idle-connection errors are logged, not thrown. */
export function connectDatabase(url: string, options: DatabaseOptions = {}): WindfallDatabase {
  const logger = options.logger ?? silentLogger();
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? 10,
    application_name: options.applicationName ?? 'windfall',
    types: windfallTypes,
    connectionTimeoutMillis: 10_000,
    // notice a server or network that vanishes without closing the connection
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
  });
  watchConnections(pool, logger);
  if (options.statementDeadlineMs !== undefined) retireOnSilence(pool, options.statementDeadlineMs);
  if (options.connectTimeoutMs !== undefined) pool.options.connectionTimeoutMillis = options.connectTimeoutMs;
  let closed = false;
  return {
    pool,
    async close() {
      if (closed) return;
      closed = true;
      await endPool(pool);
    },
  };
}

/**
 * A second pool to the same database as `pool` (same settings) with `size` connections, for the worker's settlement
 * transactions: their own connections, so that job bookkeeping never waits behind them. No session setting of its
 * own: its statements set what they need transaction-locally (a pooler in transaction mode, ADR 0014). Statements
 * without an answer after `deadlineMs` (unless they set their own) count their connection as silent.
 */
export function openSettlementPool(
  pool: pg.Pool,
  size: number,
  deadlineMs: number,
  logger: Logger = silentLogger(),
): pg.Pool {
  // pg-pool keeps the password out of enumerable options: copy it by name
  const settlement = new pg.Pool({ ...pool.options, password: pool.options.password, max: size });
  watchConnections(settlement, logger);
  retireOnSilence(settlement, deadlineMs);
  return settlement;
}

/**
 * Logs (instead of crashing on) errors of idle and checked-out connections: pg-pool emits them with no listener of
 * its own, and a server that goes away (pg_terminate_backend, a restart) would otherwise kill the process. The
 * statement in flight, if any, still fails and is retried by its caller; the pool discards the client.
 */
function watchConnections(pool: pg.Pool, logger: Logger): void {
  trackClients(pool);
  pool.on('error', (error) => {
    logger.warn(
      { err: describeConnectionError(error) },
      'an idle PostgreSQL connection failed; the pool will open a new one',
    );
  });
  pool.on('connect', (client) => {
    client.on('error', (error) => {
      // a socket closed on purpose (retired after a silence): the pool's own warning covers it
      if (isRetired(client)) return;
      logger.warn(
        { err: describeConnectionError(error) },
        'a PostgreSQL connection in use failed; the pool will discard it',
      );
    });
  });
}

/** The parts of a connection error worth logging (pg errors carry the whole client, with its settings, as `client`). */
function describeConnectionError(error: Error): { type: string; message: string; code?: string } {
  const code = (error as { code?: unknown }).code;
  return { type: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}) };
}
