import type { WindfallConfig } from '../config/config.js';
import type { WindfallDatabase } from '../db/database.js';
import { DeadLetterQueue } from '../dead-letters/dead-letter-queue.js';
import type { Logger } from '../log/logger.js';
import { WindfallMetrics } from '../metrics/metrics.js';
import type { RedisClient } from '../queue/redis-connection.js';
import { RecoveryWatchdog } from '../reconcile/recovery-watchdog.js';
import { RewardProducer } from '../queue/reward-producer.js';
import { WindfallQueues } from '../queue/windfall-queues.js';
import { queueSettingsOf } from '../queue/queue-settings.js';
import { WalletService } from '../wallet/wallet-service.js';
import { RewardWorker } from '../worker/reward-worker.js';
import { openConnections, quitRedis, type ConnectionOptions } from './connections.js';

/** Options of {@link openWindfall}. */
export interface OpenOptions extends ConnectionOptions {
  /** Default: a fresh registry. */
  readonly metrics?: WindfallMetrics;
}

/**
 * Every service of one Windfall process over one Redis connection and one PostgreSQL pool:
 * the producer, the dead-letter queue, the wallet library, and a worker factory. Close it once.
 */
export class Windfall {
  readonly queues: WindfallQueues;
  readonly producer: RewardProducer;
  readonly deadLetters: DeadLetterQueue;
  readonly wallet: WalletService;
  private readonly workers: RewardWorker[] = [];
  private watchdog: RecoveryWatchdog | undefined;
  private closed = false;

  constructor(
    readonly config: WindfallConfig,
    readonly logger: Logger,
    readonly database: WindfallDatabase,
    readonly redis: RedisClient,
    readonly metrics: WindfallMetrics,
  ) {
    this.queues = new WindfallQueues(redis, queueSettingsOf(config));
    this.producer = new RewardProducer({
      pool: database.pool,
      queues: this.queues,
      chunkSize: config.chunkSize,
      maxBatchRows: config.maxBatchRows,
      handOverTimeoutMs: config.handOverTimeoutMs,
      logger,
    });
    this.deadLetters = new DeadLetterQueue(database.pool, this.queues, logger);
    this.wallet = new WalletService({
      pool: database.pool,
      redis,
      prefix: config.prefix,
      policies: { reward: config.rewardLockPolicy },
      concurrency: config.concurrency,
      logger,
      metrics,
    });
  }

  /** A worker over `shards` (default: all), not yet started. It is closed with this object. */
  createWorker(options: { shards?: readonly number[]; concurrency?: number; jobLockMs?: number; jobsPerShard?: number } = {}): RewardWorker {
    const shards = options.shards ?? Array.from({ length: this.config.shards }, (_, shard) => shard);
    const worker = new RewardWorker({
      pool: this.database.pool,
      redis: this.redis,
      prefix: this.config.prefix,
      shards,
      concurrency: options.concurrency ?? this.config.concurrency,
      usersPerTransaction: this.config.usersPerTransaction,
      policy: this.config.rewardLockPolicy,
      cluster: this.config.redisCluster,
      maxStalledCount: this.config.maxStalledCount,
      jobLockMs: options.jobLockMs ?? this.config.jobLockMs,
      ...(options.jobsPerShard !== undefined ? { jobsPerShard: options.jobsPerShard } : {}),
      logger: this.logger,
      metrics: this.metrics,
      onDeadLetters: (entries) => this.deadLetters.mirror(entries),
    });
    this.workers.push(worker);
    // Re-adds open work whose job Redis lost or BullMQ failed for good (one watchdog per process).
    if (this.config.recoveryIntervalMs > 0 && !this.watchdog) {
      this.watchdog = new RecoveryWatchdog({
        pool: this.database.pool,
        queues: this.queues,
        redis: this.redis,
        prefix: this.config.prefix,
        intervalMs: this.config.recoveryIntervalMs,
        logger: this.logger,
      });
      this.watchdog.start();
    }
    return worker;
  }

  /** Stops workers (draining within the shutdown timeout), then closes queues and connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const steps: [string, () => Promise<unknown>][] = [
      ['recovery watchdog', async () => this.watchdog?.stop()],
      ['workers', () => Promise.all(this.workers.map((worker) => worker.close(this.config.shutdownTimeoutMs)))],
      ['queues', () => this.queues.close()],
      ['redis', () => quitRedis(this.redis)],
      ['postgres', () => this.database.close()],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (error) {
        this.logger.warn({ err: error, step: name }, 'error while closing');
      }
    }
  }
}

/** Opens connections as `config` says and (by default) checks that both services answer. */
export async function openWindfall(config: WindfallConfig, logger: Logger, options: OpenOptions = {}): Promise<Windfall> {
  const { database, redis } = await openConnections(config, logger, options);
  return new Windfall(config, logger, database, redis, options.metrics ?? new WindfallMetrics());
}
