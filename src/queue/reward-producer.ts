import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import { BatchValidationError } from '../batch/batch-errors.js';
import { findBatch, stageBatch, type StagedBatch } from '../batch/stage-batch.js';
import { identifierProblem } from '../rewards/field-rules.js';
import type { SourceRecord } from '../rewards/reward-sources.js';
import { recordsFromArray } from '../rewards/reward-sources.js';
import { chunkJobId, type ChunkJobData } from './job-data.js';
import type { WindfallQueues } from './windfall-queues.js';

/** Chunk jobs handed to BullMQ per call. */
const JOBS_PER_ADD = 500;

/** What the producer needs. */
export interface ProducerOptions {
  readonly pool: pg.Pool;
  readonly queues: WindfallQueues;
  /** Rewards per shard job. Default 2000. */
  readonly chunkSize?: number;
  /** Longest accepted batch. Default 10,000,000. */
  readonly maxBatchRows?: number;
  readonly logger?: Logger;
}

/** The answer to an enqueue. */
export interface EnqueueResult {
  readonly batchId: string;
  readonly total: number;
  readonly users: number;
  readonly chunks: number;
  /** False when the batch id was known: the call was a no-op returning the recorded batch. */
  readonly created: boolean;
}

/**
 * Accepts reward batches: validates a whole batch, records it in PostgreSQL, then hands one job per chunk to the
 * shard queues under deterministic job ids. Enqueueing a known batch id again is a no-op returning that batch
 * (and finishes handing over its jobs if an earlier call stopped half-way).
 */
export class RewardProducer {
  private readonly logger: Logger;

  constructor(private readonly options: ProducerOptions) {
    this.logger = options.logger ?? silentLogger();
  }

  /**
   * Validates and enqueues a batch from parsed records (a file or an array).
   * @throws {@link BatchValidationError} listing every bad row; then nothing was enqueued or recorded.
   */
  async enqueue(records: AsyncIterable<SourceRecord>, options: { batchId?: string } = {}): Promise<EnqueueResult> {
    const batchId = options.batchId ?? randomUUID();
    const problem = identifierProblem(batchId);
    if (problem) throw new BatchValidationError([{ row: 0, field: 'batchId', ...problem }], 0, `batch refused: batchId ${problem.reason}`);

    const known = await findBatch(this.options.pool, batchId);
    const staged: StagedBatch =
      known ??
      (await stageBatch(this.options.pool, records, {
        batchId,
        shards: this.options.queues.settings.shards,
        chunkSize: this.options.chunkSize ?? 2000,
        maxRows: this.options.maxBatchRows ?? 10_000_000,
      }));
    if (!staged.created) this.logger.info({ batchId }, 'batch id already known: enqueue is a no-op');
    if (!staged.enqueued) await this.handOverChunks(staged);
    return { batchId, total: staged.total, users: staged.users, chunks: staged.chunks, created: staged.created };
  }

  /** Validates and enqueues rewards given as objects (`{rewardId, uid, amount, description?}`). */
  enqueueRewards(rewards: readonly unknown[], options: { batchId?: string } = {}): Promise<EnqueueResult> {
    return this.enqueue(recordsFromArray(rewards), options);
  }

  /** Adds the job of every chunk of a recorded batch (idempotent by job id), then marks the batch enqueued. */
  private async handOverChunks(batch: StagedBatch): Promise<void> {
    let after = -1;
    for (;;) {
      const { rows } = await this.options.pool.query<{ chunk_no: number; shard: number }>(
        `select chunk_no, shard from reward_chunks where batch_id = $1 and chunk_no > $2 order by chunk_no limit $3`,
        [batch.batchId, after, JOBS_PER_ADD],
      );
      if (rows.length === 0) break;
      const byShard = new Map<number, ChunkJobData[]>();
      for (const row of rows) {
        const list = byShard.get(row.shard) ?? [];
        list.push({ kind: 'chunk', batchId: batch.batchId, chunkNo: row.chunk_no, shard: row.shard });
        byShard.set(row.shard, list);
      }
      await Promise.all(
        [...byShard].map(([shard, jobs]) =>
          this.options.queues
            .shard(shard)
            .addBulk(jobs.map((data) => ({ name: 'chunk', data, opts: { jobId: chunkJobId(data.batchId, data.chunkNo) } }))),
        ),
      );
      after = rows[rows.length - 1]!.chunk_no;
    }
    await this.options.pool.query('update reward_batches set enqueued_at = now() where batch_id = $1 and enqueued_at is null', [batch.batchId]);
    this.logger.info({ batchId: batch.batchId, total: batch.total, users: batch.users, chunks: batch.chunks }, 'batch enqueued');
  }
}
