import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { DEFAULT_CONFIG } from '../config/config.js';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import { BatchConflictError, BatchValidationError } from '../rewards/batch-errors.js';
import { confirmSameContent } from './compare-batch.js';
import { findBatch, stageBatch, type StagedBatch } from '../staging/stage-batch.js';
import { identifierProblem } from '../rewards/field-rules.js';
import type { SourceRecord } from '../rewards/reward-sources.js';
import { recordsFromArray } from '../rewards/reward-sources.js';
import { ServiceUnavailableError } from '../services/service-check.js';
import { chunkJobId, type ChunkJobData } from '../queue/job-data.js';
import { chunkJobPriority, isBatchPriority } from '../queue/job-priority.js';
import type { WindfallQueues } from '../queue/windfall-queues.js';

/** Chunk jobs handed to BullMQ per call. */
const JOBS_PER_ADD = 500;

/** The next chunks of a batch, each with its turn among the batch's chunks of its shard (0 for the first). */
const CHUNK_TURNS_SQL = `
select chunk_no, shard, turn from (
  select chunk_no, shard, (row_number() over (partition by shard order by chunk_no) - 1)::int as turn
  from reward_chunks where batch_id = $1
) c where chunk_no > $2 order by chunk_no limit $3`;

/**
 * Shard queues made only once a batch is ready to be handed over: the batch is cut into chunks (by `shards`) before
 * they exist, and `load` runs while PostgreSQL finishes recording the batch (a command line process loads BullMQ
 * then, off its critical path).
 */
export interface DeferredQueues {
  /** WINDFALL_SHARDS. */
  readonly shards: number;
  /** Makes the queues; called at most once per producer. */
  readonly load: () => Promise<WindfallQueues>;
}

/** What the producer needs. */
export interface ProducerOptions {
  readonly pool: pg.Pool;
  /** The shard queues, or how to make them when the first batch is handed over. */
  readonly queues: WindfallQueues | DeferredQueues;
  /** Rewards per shard job. Default 2000. */
  readonly chunkSize?: number;
  /** Longest accepted batch. Default 10,000,000. */
  readonly maxBatchRows?: number;
  /**
   * How long handing a recorded batch's jobs to Redis may take before the call gives up with
   * {@link ServiceUnavailableError} (the batch stays recorded; enqueueing it again finishes the hand-over).
   * Default 30,000 ms.
   */
  readonly handOverTimeoutMs?: number;
  /**
   * Chunk jobs take turns between batches and follow their batch's priority lane (see `chunkJobPriority`). False
   * queues them first in first out, ignoring priorities: only for measuring the difference (bench `--fairness`).
   * Default true.
   */
  readonly fairScheduling?: boolean;
  /**
   * Most memory (estimated) a batch's chunk plan may take while it is read; a batch with more users is planned by
   * PostgreSQL from its staged rows. Default 32 MiB (about 300,000 users of 20-character uids).
   */
  readonly plannedBytes?: number;
  readonly logger?: Logger;
}

/** What a batch may say besides its rewards. */
export interface EnqueueOptions {
  /** Generated (a UUID) when absent. */
  readonly batchId?: string;
  /** The campaign whose budget pays for the batch (1–128 characters); the batch is refused if it does not fit. */
  readonly campaignId?: string;
  /** `high`, `normal` (default) or `low`: the lane of the batch's chunk jobs. */
  readonly priority?: string;
}

/** The answer to an enqueue. */
export interface EnqueueResult {
  readonly batchId: string;
  readonly total: number;
  readonly users: number;
  readonly chunks: number;
  /** False when the batch id was known (with the same rewards): the call was a no-op returning the recorded batch. */
  readonly created: boolean;
}

/**
 * Accepts reward batches: validates a whole batch, records it in PostgreSQL, then hands one job per chunk to the
 * shard queues under deterministic job ids. Enqueueing a known batch id again with the same rewards (in any order)
 * is a no-op returning that batch (and finishes handing over its jobs if an earlier call stopped half-way); with
 * other rewards it is refused with {@link BatchConflictError}.
 */
export class RewardProducer {
  private readonly logger: Logger;
  private loadedQueues: Promise<WindfallQueues> | undefined;

  constructor(private readonly options: ProducerOptions) {
    this.logger = options.logger ?? silentLogger();
  }

  private get shards(): number {
    const { queues } = this.options;
    return 'load' in queues ? queues.shards : queues.settings.shards;
  }

  /** The shard queues (made on the first call when deferred). */
  private queues(): Promise<WindfallQueues> {
    const { queues } = this.options;
    this.loadedQueues ??= 'load' in queues ? queues.load() : Promise.resolve(queues);
    return this.loadedQueues;
  }

  /**
   * Validates and enqueues a batch from parsed records (a file or an array).
   * @throws {@link BatchValidationError} reporting the bad rows; then nothing was enqueued or recorded.
   * @throws {@link BatchConflictError} when the batchId is known with other rewards; then nothing of `records` was
   *   recorded.
   * @throws {@link ServiceUnavailableError} when Redis did not take the batch's jobs within `handOverTimeoutMs`; the
   *   batch is recorded, and enqueueing it again (same batchId, same rewards) finishes the hand-over.
   * @throws {@link BudgetExceededError} when the batch's total does not fit in its campaign's remaining budget; then
   *   nothing was recorded.
   */
  async enqueue(records: AsyncIterable<SourceRecord>, options: EnqueueOptions = {}): Promise<EnqueueResult> {
    const batchId = options.batchId ?? randomUUID();
    const problem = identifierProblem(batchId);
    if (problem)
      throw new BatchValidationError(
        [{ row: 0, field: 'batchId', ...problem }],
        0,
        `batch refused: batchId ${problem.reason}`,
      );
    const campaignProblem = options.campaignId === undefined ? null : identifierProblem(options.campaignId);
    if (campaignProblem) {
      throw new BatchValidationError(
        [{ row: 0, field: 'campaignId', ...campaignProblem }],
        0,
        `batch refused: campaignId ${campaignProblem.reason}`,
      );
    }
    const priority = options.priority ?? 'normal';
    if (!isBatchPriority(priority)) {
      const reason = `must be high, normal or low, got ${JSON.stringify(priority)}`;
      throw new BatchValidationError(
        [{ row: 0, field: 'priority', code: 'invalid_priority', reason }],
        0,
        `batch refused: priority ${reason}`,
      );
    }
    const maxRows = this.options.maxBatchRows ?? DEFAULT_CONFIG.maxBatchRows;

    // a batch recorded by an earlier call, or by a concurrent one that claimed the batchId first (stageBatch then
    // returns it without reading anything)
    const staged: StagedBatch =
      (await findBatch(this.options.pool, batchId)) ??
      (await stageBatch(this.options.pool, records, {
        batchId,
        shards: this.shards,
        chunkSize: this.options.chunkSize ?? DEFAULT_CONFIG.chunkSize,
        maxRows,
        priority,
        ...(options.campaignId !== undefined ? { campaignId: options.campaignId } : {}),
        ...(this.options.plannedBytes !== undefined ? { plannedBytes: this.options.plannedBytes } : {}),
        // deferred queues are made while PostgreSQL plans the chunks (a failure shows at the hand-over)
        onRowsRead: () => void this.queues().catch(() => undefined),
      }));
    if (!staged.created) {
      if (staged.campaignId !== (options.campaignId ?? null)) {
        throw new BatchConflictError(
          batchId,
          staged.total,
          0,
          `batch ${JSON.stringify(batchId)} already exists under ${staged.campaignId === null ? 'no campaign' : `campaign ${JSON.stringify(staged.campaignId)}`}, not ${options.campaignId === undefined ? 'without one' : JSON.stringify(options.campaignId)}: nothing of this input was recorded. Send it again with its campaign, or under a new batchId.`,
        );
      }
      await confirmSameContent(records, staged, { maxRows });
      this.logger.info({ batchId }, 'batch id already known with the same rewards: enqueue is a no-op');
    }
    if (!staged.enqueued) await this.handOverWithinTimeout(staged);
    return { batchId, total: staged.total, users: staged.users, chunks: staged.chunks, created: staged.created };
  }

  /** Validates and enqueues rewards given as objects (`{rewardId, uid, amount, description?}`). */
  enqueueRewards(rewards: readonly unknown[], options: EnqueueOptions = {}): Promise<EnqueueResult> {
    return this.enqueue(recordsFromArray(rewards), options);
  }

  /**
   * {@link handOverChunks}, given up after `handOverTimeoutMs` (the Redis client waits across reconnects for ever):
   * the batch stays recorded and not marked enqueued, so that the next enqueue of it hands over its jobs.
   */
  private async handOverWithinTimeout(batch: StagedBatch): Promise<void> {
    const timeoutMs = this.options.handOverTimeoutMs ?? DEFAULT_CONFIG.handOverTimeoutMs;
    const stop = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        stop.abort();
        reject(
          new ServiceUnavailableError(
            'Redis',
            `Redis did not take the jobs of batch ${JSON.stringify(batch.batchId)} within ${timeoutMs / 1000} s (is it down, or out of memory?). ` +
              `The batch is recorded in PostgreSQL: once Redis answers, enqueue it again with the same batchId and rewards to finish the hand-over (nothing is credited twice).`,
          ),
        );
      }, timeoutMs);
    });
    try {
      // the losing hand-over is abandoned: it stops before its next page of jobs and never marks the batch enqueued
      await Promise.race([this.handOverChunks(batch, stop.signal), expired]);
    } catch (error) {
      if (error instanceof ServiceUnavailableError)
        this.logger.warn(
          { batchId: batch.batchId, timeoutMs },
          'Redis did not take the batch jobs in time; the batch waits in PostgreSQL',
        );
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Adds the job of every chunk of a recorded batch (idempotent by job id), then marks the batch enqueued. */
  private async handOverChunks(batch: StagedBatch, signal: AbortSignal): Promise<void> {
    let after = -1;
    for (;;) {
      if (signal.aborted) return;
      const { rows } = await this.options.pool.query<{ chunk_no: number; shard: number; turn: number }>(
        CHUNK_TURNS_SQL,
        [batch.batchId, after, JOBS_PER_ADD],
      );
      if (rows.length === 0) break;
      const queues = await this.queues();
      const byShard = new Map<number, { data: ChunkJobData; priority: number }[]>();
      for (const row of rows) {
        const list = byShard.get(row.shard) ?? [];
        list.push({
          data: { kind: 'chunk', batchId: batch.batchId, chunkNo: row.chunk_no, shard: row.shard },
          priority: this.options.fairScheduling === false ? 0 : chunkJobPriority(batch.priority, row.turn),
        });
        byShard.set(row.shard, list);
      }
      await Promise.all(
        [...byShard].map(([shard, jobs]) =>
          queues.shard(shard).addBulk(
            jobs.map(({ data, priority }) => ({
              name: 'chunk',
              data,
              opts: { jobId: chunkJobId(data.batchId, data.chunkNo), ...(priority > 0 ? { priority } : {}) },
            })),
          ),
        ),
      );
      after = rows[rows.length - 1]!.chunk_no;
    }
    if (signal.aborted) return;
    await this.options.pool.query(
      'update reward_batches set enqueued_at = now() where batch_id = $1 and enqueued_at is null',
      [batch.batchId],
    );
    this.logger.info(
      { batchId: batch.batchId, total: batch.total, users: batch.users, chunks: batch.chunks },
      'batch enqueued',
    );
  }
}
