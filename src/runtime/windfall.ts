import type { WindfallConfig } from '../config/config.js';
import type { WindfallDatabase } from '../db/database.js';
import { DeadLetterService } from '../dead-letters/dead-letter-service.js';
import { EventDeliveryWorker, type EventDeliveryOptions } from '../events/event-delivery-worker.js';
import { EventPublisher } from '../events/event-publisher.js';
import type { Logger } from '../log/logger.js';
import { WindfallMetrics } from '../metrics/metrics.js';
import type { RedisClient } from '../services/redis-connection.js';
import { RecoveryWatchdog } from '../reconcile/recovery-watchdog.js';
import { RewardProducer } from '../producer/reward-producer.js';
import { WindfallQueues } from '../queue/windfall-queues.js';
import { queueSettingsOf } from '../queue/queue-settings.js';
import { WalletService } from '../wallet/wallet-service.js';
import { RewardWorker } from '../worker/reward-worker.js';
import { openConnections, quitRedis, type ConnectionOptions } from '../services/connections.js';

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
  readonly deadLetters: DeadLetterService;
  readonly wallet: WalletService;
  /**
   * Set when `WINDFALL_WEBHOOK_URL` is: batch statuses written by this process record their events (`batch.completed`,
   * `batch.reverted`) and add their delivery jobs through it. Undefined: no event is recorded.
   */
  readonly events: EventPublisher | undefined;
  private readonly workers: RewardWorker[] = [];
  private eventDelivery: EventDeliveryWorker | undefined;
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
    this.events =
      config.webhookUrl !== undefined
        ? new EventPublisher({ pool: database.pool, queues: this.queues, logger })
        : undefined;
    this.deadLetters = new DeadLetterService(database.pool, this.queues, logger, this.events);
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
  createWorker(
    options: { shards?: readonly number[]; concurrency?: number; jobLockMs?: number; jobsPerShard?: number } = {},
  ): RewardWorker {
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
      pgSilenceMs: this.config.pgSilenceMs,
      ...(options.jobsPerShard !== undefined ? { jobsPerShard: options.jobsPerShard } : {}),
      logger: this.logger,
      metrics: this.metrics,
      onDeadLetters: (entries) => this.deadLetters.mirror(entries),
      events: this.events,
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
        events: this.events,
      });
      this.watchdog.start();
    }
    return worker;
  }

  /**
   * Starts delivering batch events to `WINDFALL_WEBHOOK_URL` in this process (one delivery worker per process; a
   * second call returns the first). Undefined when no URL is configured. `windfall worker` starts one; it is closed
   * with this object. The options (timeout, backoff, job lock) are for tests.
   */
  async startEventDelivery(
    options: Partial<Pick<EventDeliveryOptions, 'concurrency' | 'timeoutMs' | 'backoff' | 'jobLockMs'>> = {},
  ): Promise<EventDeliveryWorker | undefined> {
    const { webhookUrl, webhookSecret } = this.config;
    if (webhookUrl === undefined || webhookSecret === undefined || !this.events) return undefined;
    if (this.eventDelivery) return this.eventDelivery;
    this.eventDelivery = new EventDeliveryWorker({
      pool: this.database.pool,
      redis: this.redis,
      prefix: this.config.prefix,
      cluster: this.config.redisCluster,
      url: webhookUrl,
      secret: webhookSecret,
      jobLockMs: this.config.jobLockMs,
      maxStalledCount: this.config.maxStalledCount,
      publisher: this.events,
      logger: this.logger,
      metrics: this.metrics,
      ...options,
    });
    await this.eventDelivery.start();
    return this.eventDelivery;
  }

  /** Stops workers (draining within the shutdown timeout), then closes queues and connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const steps: [string, () => Promise<unknown>][] = [
      ['recovery watchdog', async () => this.watchdog?.stop()],
      ['workers', () => Promise.all(this.workers.map((worker) => worker.close(this.config.shutdownTimeoutMs)))],
      ['event delivery', async () => this.eventDelivery?.close()],
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
export async function openWindfall(
  config: WindfallConfig,
  logger: Logger,
  options: OpenOptions = {},
): Promise<Windfall> {
  const { database, redis } = await openConnections(config, logger, options);
  return new Windfall(config, logger, database, redis, options.metrics ?? new WindfallMetrics());
}
