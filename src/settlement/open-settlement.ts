import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { openSettlementPool } from '../db/database.js';
import { isDatabaseUnavailable } from '../db/pg-errors.js';
import { describeSilence, isSilentConnection, withDeadline } from '../db/silent-connections.js';
import type { LockPolicy } from '../lock/lock-policy.js';
import { UserLocks } from '../lock/user-locks.js';
import type { Logger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { RedisClient } from '../services/redis-connection.js';
import { describeRedisError, isRedisUnavailable } from '../services/redis-errors.js';
import { Admission } from './admission.js';
import { GroupSettlement } from './group-settlement.js';
import { ServiceGate } from '../services/service-gate.js';
import { SettlementPipeline } from './settlement-pipeline.js';

/** A group transaction waiting longer than this for a wallet row held by another transaction is split, ms. */
const LOCK_WAIT_MS = 5000;
/** A user settled alone waits this long for its wallet row held by another transaction; then its job retries it, ms. */
const HELD_ROW_WAIT_MS = 60_000;
/** A probe of PostgreSQL without an answer after this long has failed (its connection is taken as silent), ms. */
const PROBE_DEADLINE_MS = 2000;
/** Most rewards in one transaction (a user with more is settled alone). */
const REWARDS_PER_TRANSACTION = 4000;

/** Options of {@link openSettlement}. */
export interface SettlementOptions {
  /** The process's pool: job-level steps, probes, and watching statements that wait for a row. */
  readonly pool: pg.Pool;
  /** Locks (and the Redis probe). */
  readonly redis: RedisClient;
  readonly prefix: string;
  /** The reward lock policy. */
  readonly policy: LockPolicy;
  /** Transactions in flight at once (WINDFALL_CONCURRENCY); as many connections are opened for them. */
  readonly transactions: number;
  /** Most users in one transaction (WINDFALL_USERS_PER_TRANSACTION). */
  readonly usersPerTransaction: number;
  /**
   * A statement without an answer this long past its own lock-wait limit counts its connection as silent
   * (WINDFALL_PG_SILENCE_MS).
   */
  readonly pgSilenceMs: number;
  /** Aborted when the worker stops. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly metrics?: WindfallMetrics | undefined;
  /** Lock manager to use. Default: one over `redis` and `prefix`. */
  readonly locks?: UserLocks;
}

/** The parts of a worker that settle users, wired together. */
export interface Settlement {
  readonly pipeline: SettlementPipeline;
  readonly admission: Admission;
  /** Paused while Redis cannot work. */
  readonly redisGate: ServiceGate;
  /** Paused while PostgreSQL cannot work. */
  readonly postgresGate: ServiceGate;
  /** Ends the gates, gives back the locks waiting for release, closes the settlement connections. Idempotent. */
  close(): Promise<void>;
}

/**
 * Wires a worker's settlement: a line of users whose locks are taken many per Redis round trip
 * ({@link SettlementPipeline}), group transactions on connections of their own ({@link GroupSettlement}), the
 * admission of jobs into the line ({@link Admission}), and a {@link ServiceGate} per service that pauses the work while
 * Redis or PostgreSQL cannot do it.
 */
export function openSettlement(options: SettlementOptions): Settlement {
  const { logger, metrics } = options;
  const locks =
    options.locks ?? new UserLocks(options.redis, { prefix: options.prefix, logger, ...(metrics ? { metrics } : {}) });
  const statements = openSettlementPool(options.pool, options.transactions, LOCK_WAIT_MS + options.pgSilenceMs, logger);
  const probeKey = `${options.prefix}:worker-probe:${randomUUID()}`;
  const redisGate = new ServiceGate({
    service: 'Redis',
    // a write, as locks and jobs need: a Redis at its memory limit or read-only answers PING but refuses this
    probe: () => options.redis.set(probeKey, '1', 'PX', 10_000),
    isFault: isRedisUnavailable,
    describe: describeRedisError,
    logger,
    metrics,
  });
  const postgresGate = new ServiceGate({
    service: 'PostgreSQL',
    // a connection that can write: a standby (or a primary being failed over) answers, read-only
    probe: async () => {
      // through the settlement connections: a server refusing them new connections (53300) is not back yet
      const { rows } = await statements.query<{ read_only: string }>(
        // as long as the gate waits for a probe: a silent connection is found (and retired) at once
        withDeadline({ text: `select current_setting('transaction_read_only') as read_only` }, PROBE_DEADLINE_MS),
      );
      if (rows[0]?.read_only !== 'off')
        throw new Error('PostgreSQL accepts only read-only transactions (a standby, or a failover in progress)');
    },
    isFault: isDatabaseUnavailable,
    describe: (error) =>
      isSilentConnection(error)
        ? describeSilence(options.pgSilenceMs)
        : error instanceof Error
          ? error.message
          : String(error),
    probeTimeoutMs: PROBE_DEADLINE_MS,
    logger,
    metrics,
  });
  const groups = new GroupSettlement({
    pool: statements,
    gate: postgresGate,
    signal: options.signal,
    logger,
    metrics,
    lockWaitMs: LOCK_WAIT_MS,
    heldRowWaitMs: HELD_ROW_WAIT_MS,
    silenceMs: options.pgSilenceMs,
  });
  let admission: Admission | undefined;
  const pipeline = new SettlementPipeline({
    locks,
    policy: options.policy,
    groups,
    redisGate,
    postgresGate,
    transactions: options.transactions,
    usersPerTransaction: options.usersPerTransaction,
    rewardsPerTransaction: Math.max(REWARDS_PER_TRANSACTION, options.usersPerTransaction),
    signal: options.signal,
    logger,
    onLineShortened: () => admission?.check(),
  });
  // jobs load their users while the line holds less than about two waves of transactions
  admission = new Admission(
    Math.max(1000, 4 * options.transactions * options.usersPerTransaction),
    () => pipeline.usersInLine,
  );
  let closing: Promise<void> | undefined;
  return {
    pipeline,
    admission,
    redisGate,
    postgresGate,
    close() {
      closing ??= (async () => {
        redisGate.end();
        postgresGate.end();
        await pipeline
          .close()
          .catch((error: unknown) => logger.warn({ err: error }, 'error while giving back user locks'));
        await statements
          .end()
          .catch((error: unknown) => logger.warn({ err: error }, 'error while closing the settlement connections'));
      })();
      return closing;
    },
  };
}
