import { setMaxListeners } from 'node:events';
import { Worker, type Job } from 'bullmq';
import type pg from 'pg';
import { withTimeout } from '../concurrency/with-timeout.js';
import { DEFAULT_CONFIG } from '../config/config.js';
import type { DeadLetterEntry } from '../dead-letters/dead-letter-store.js';
import type { EventSink } from '../events/event-publisher.js';
import type { LockPolicy } from '../lock/lock-policy.js';
import type { Logger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { RewardJobData } from '../queue/job-data.js';
import { shardQueueName } from '../queue/queue-names.js';
import type { RedisClient } from '../services/redis-connection.js';
import { isRedisUnavailable } from '../services/redis-errors.js';
import { queryBuilder } from '../db/query-builder.js';
import type { JobResult, ProcessorContext } from './job-processor.js';
import { processRewardJob } from './job-processor.js';
import { openSettlement, type Settlement } from '../settlement/open-settlement.js';

/** How long past the shutdown deadline a stopping worker still waits for its jobs before leaving them. */
const ABANDON_AFTER_DEADLINE_MS = 15_000;
/** How long a stopping worker waits to give back its users' locks and close its settlement connections. */
const SETTLEMENT_CLOSE_WAIT_MS = 5000;

/** Options of {@link RewardWorker}. */
export interface RewardWorkerOptions {
  readonly pool: pg.Pool;
  /** Connection for locks; BullMQ workers open their own blocking connections from it. */
  readonly redis: RedisClient;
  readonly prefix: string;
  /** Shard queues to consume. */
  readonly shards: readonly number[];
  /** PostgreSQL transactions settling users at once in this process (WINDFALL_CONCURRENCY). */
  readonly concurrency: number;
  /** Most users settled by one transaction (WINDFALL_USERS_PER_TRANSACTION); 1 = one transaction per user. */
  readonly usersPerTransaction: number;
  readonly policy: LockPolicy;
  readonly cluster?: boolean;
  /** Jobs one shard queue runs at once (the next starts while one tails off). Default 2. */
  readonly jobsPerShard?: number;
  /** Times a job may be picked up again after its worker died. Default 1000 (`WINDFALL_MAX_STALLED`'s). */
  readonly maxStalledCount?: number;
  /** BullMQ job lock duration; a dead worker's job is taken over after about this long. Default 30000 (`WINDFALL_JOB_LOCK_MS`'s). */
  readonly jobLockMs?: number;
  /**
   * A settlement statement without an answer this long past its own lock-wait limit counts its connection as silent
   * (WINDFALL_PG_SILENCE_MS). Default 20000.
   */
  readonly pgSilenceMs?: number;
  readonly logger: Logger;
  readonly metrics?: WindfallMetrics;
  /** Mirrors dead-letter entries into the dead-letter queue. */
  readonly onDeadLetters?: (entries: readonly DeadLetterEntry[]) => Promise<void>;
  /** Webhooks configured: records and hands over the event of a batch a job completes. */
  readonly events?: EventSink;
}

/**
 * Consumes shard queues: one BullMQ worker per shard, all feeding one {@link Settlement} (locks taken and released
 * many users per Redis round trip; users settled in group transactions). Redis and PostgreSQL outages pause the work
 * instead of failing it. `close()` stops fetching, lets in-flight users finish within a
 * deadline, then puts back what is left.
 */
export class RewardWorker {
  private readonly workers: Worker<RewardJobData, JobResult>[] = [];
  private readonly abort = new AbortController();
  private readonly settlement: Settlement;
  private closing: Promise<void> | undefined;
  /** Jobs being processed in this process. */
  private readonly running = new Set<Promise<unknown>>();

  private track<T>(processing: Promise<T>): Promise<T> {
    this.running.add(processing);
    const forget = (): void => {
      this.running.delete(processing);
    };
    processing.then(forget, forget);
    return processing;
  }

  constructor(private readonly options: RewardWorkerOptions) {
    // every user waiting for its lock listens to the shutdown signal: many listeners are expected, and each removes
    // itself when its wait ends (Node's default of 10 would print a false leak warning)
    setMaxListeners(0, this.abort.signal);
    this.settlement = openSettlement({
      pool: options.pool,
      redis: options.redis,
      prefix: options.prefix,
      policy: options.policy,
      transactions: options.concurrency,
      usersPerTransaction: options.usersPerTransaction,
      pgSilenceMs: options.pgSilenceMs ?? DEFAULT_CONFIG.pgSilenceMs,
      signal: this.abort.signal,
      logger: options.logger,
      metrics: options.metrics,
    });
  }

  /** Starts consuming. Resolves once every shard worker is connected. */
  async start(): Promise<void> {
    // the batch-status report a finished batch is written from reads through Kysely: loaded now (≈ 0.2 s of the main
    // thread), not in the middle of the first job that finishes a batch
    await queryBuilder();
    const context: ProcessorContext = {
      pool: this.options.pool,
      pipeline: this.settlement.pipeline,
      admission: this.settlement.admission,
      postgresGate: this.settlement.postgresGate,
      logger: this.options.logger,
      metrics: this.options.metrics,
      signal: this.abort.signal,
      ...(this.options.onDeadLetters ? { onDeadLetters: this.options.onDeadLetters } : {}),
      ...(this.options.events ? { events: this.options.events } : {}),
    };
    for (const shard of this.options.shards) {
      const worker = new Worker<RewardJobData, JobResult>(
        shardQueueName(shard, this.options.cluster ?? DEFAULT_CONFIG.redisCluster),
        (job: Job<RewardJobData>, token?: string) => this.track(processRewardJob(context, job, token)),
        {
          connection: this.options.redis,
          prefix: this.options.prefix,
          concurrency: this.options.jobsPerShard ?? 2,
          maxStalledCount: this.options.maxStalledCount ?? DEFAULT_CONFIG.maxStalledCount,
          lockDuration: this.options.jobLockMs ?? DEFAULT_CONFIG.jobLockMs,
          stalledInterval: this.options.jobLockMs ?? DEFAULT_CONFIG.jobLockMs,
          autorun: false,
        },
      );
      worker.on('error', (error) => {
        // Redis refusing work is reported once by the gate (and probed), not once per shard and retry
        if (isRedisUnavailable(error)) this.settlement.redisGate.fault(error);
        else this.options.logger.error({ err: error, shard }, 'shard worker error');
      });
      worker.on('failed', (job, error) => {
        if (!job || error.name === 'DelayedError') return;
        const willRetry = job.attemptsMade < (job.opts.attempts ?? 1);
        this.options.logger[willRetry ? 'warn' : 'error'](
          {
            jobId: job.id,
            batchId: job.data.batchId,
            shard,
            attemptsMade: job.attemptsMade,
            err: { message: error.message },
          },
          willRetry ? 'shard job attempt failed; it will be retried' : 'shard job failed for good',
        );
      });
      this.workers.push(worker);
      worker
        .run()
        .catch((error: unknown) =>
          this.options.logger.error({ err: error, shard }, 'shard worker stopped with an error'),
        );
    }
    await Promise.all(this.workers.map((worker) => worker.waitUntilReady()));
    this.options.logger.info(
      {
        shards: this.options.shards,
        concurrency: this.options.concurrency,
        usersPerTransaction: this.options.usersPerTransaction,
        policy: this.options.policy,
      },
      'worker started',
    );
  }

  /**
   * Stops fetching jobs and waits for in-flight users. After `timeoutMs` lock waits are cut short and unfinished
   * jobs are put back (delayed, no attempt counted) for another worker. Jobs still running 15 s after that (a
   * server not answering) are left for BullMQ to hand to another worker once their job lock expires. Idempotent.
   */
  close(timeoutMs = DEFAULT_CONFIG.shutdownTimeoutMs): Promise<void> {
    this.closing ??= (async () => {
      const timer = setTimeout(() => {
        this.options.logger.warn(
          { timeoutMs },
          'shutdown deadline reached: cutting lock waits short and putting unfinished jobs back',
        );
        this.abort.abort(new Error('worker shutting down'));
      }, timeoutMs);
      try {
        // Stop fetching, let our jobs finish (or be put back at the deadline), then close BullMQ without waiting for
        // its fetch loop: a loop blocked on a connection that is reconnecting (Redis just restarted) never ends,
        // and a plain close() would wait for it forever.
        await Promise.allSettled(this.workers.map((worker) => worker.pause(true)));
        let abandonTimer: NodeJS.Timeout | undefined;
        const abandon = new Promise<false>((resolve) => {
          abandonTimer = setTimeout(() => resolve(false), timeoutMs + ABANDON_AFTER_DEADLINE_MS);
        });
        while (this.running.size > 0) {
          const finished = await Promise.race([Promise.allSettled([...this.running]).then(() => true), abandon]);
          if (!finished) {
            // A job stuck on a server that does not answer (a Redis outage with commands queued, a silent network
            // loss) would keep the process alive for ever. Leave it: its BullMQ lock expires and another worker
            // takes the job over; its users' locks expire by their TTL; statements are idempotent.
            this.options.logger.error(
              { jobs: this.running.size, waitedMs: timeoutMs + ABANDON_AFTER_DEADLINE_MS },
              'jobs still running well past the shutdown deadline (a server is not answering); leaving them to be taken over by another worker',
            );
            break;
          }
        }
        clearTimeout(abandonTimer);
        await Promise.allSettled(this.workers.map((worker) => worker.close(true)));
        this.abort.abort(new Error('worker stopped'));
        // giving back locks needs Redis, ending the settlement pool waits for its statements: neither may hold the
        // exit of a worker whose servers do not answer (the locks expire by their TTL)
        await withTimeout(this.settlement.close(), SETTLEMENT_CLOSE_WAIT_MS).catch(() =>
          this.options.logger.warn(
            { waitedMs: SETTLEMENT_CLOSE_WAIT_MS },
            'user locks and settlement connections not closed in time; leaving them (locks expire by their TTL)',
          ),
        );
      } finally {
        clearTimeout(timer);
      }
      this.options.logger.info('worker stopped');
    })();
    return this.closing;
  }
}
