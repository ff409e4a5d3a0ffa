import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type pg from 'pg';
import { getBatchReport } from '../../status/batch-status.js';
import type { BatchReport } from '../../status/batch-status.js';
import type { WindfallConfig } from '../../config/config.js';
import type { Logger } from '../../log/logger.js';
import { queueSettingsOf } from '../../queue/queue-settings.js';
import { RewardProducer, type EnqueueResult } from '../../producer/reward-producer.js';
import type { WindfallQueues } from '../../queue/windfall-queues.js';
import type { RewardFileFormat } from '../../rewards/reward-sources.js';
import { formatFromFileName, readRewardFile } from '../../rewards/reward-sources.js';
import { openConnections, quitRedis } from '../../services/connections.js';
import { UsageError } from '../support/exit-codes.js';
import { watchBatch } from '../support/progress.js';

/** What `windfall enqueue` works with: the PostgreSQL pool and a producer. */
export interface EnqueueSession {
  readonly pool: pg.Pool;
  readonly producer: RewardProducer;
}

/**
 * Opens what `windfall enqueue` needs, checks that Redis and PostgreSQL answer, runs `run`, and closes everything.
 * Lighter than {@link openWindfall}: the command is on the batch's critical path (file → applied), so BullMQ is loaded
 * only while PostgreSQL finishes recording the batch, and nothing of the worker, wallet or metrics is loaded at all.
 */
export async function withEnqueueSession<T>(
  config: WindfallConfig,
  logger: Logger,
  run: (session: EnqueueSession) => Promise<T>,
): Promise<T> {
  const { database, redis } = await openConnections(config, logger);
  let queues: WindfallQueues | undefined;
  const producer = new RewardProducer({
    pool: database.pool,
    queues: {
      shards: config.shards,
      load: async () => {
        const { WindfallQueues } = await import('../../queue/windfall-queues.js');
        queues = new WindfallQueues(redis, queueSettingsOf(config));
        return queues;
      },
    },
    chunkSize: config.chunkSize,
    maxBatchRows: config.maxBatchRows,
    handOverTimeoutMs: config.handOverTimeoutMs,
    logger,
  });
  try {
    return await run({ pool: database.pool, producer });
  } finally {
    const steps: [string, () => Promise<unknown>][] = [
      ['queues', async () => queues?.close()],
      ['redis', () => quitRedis(redis)],
      ['postgres', () => database.close()],
    ];
    for (const [name, step] of steps)
      await step().catch((error: unknown) => logger.warn({ err: error, step: name }, 'error while closing'));
  }
}

/** Flags of `windfall enqueue`. */
export interface EnqueueFlags {
  readonly file: string;
  readonly format?: string;
  readonly batchId?: string;
  readonly campaign?: string;
  readonly priority?: string;
}

/** Opens the file (or standard input for `-`) and picks its format. */
export async function openRewardFile(
  file: string,
  format?: string,
): Promise<{ stream: AsyncIterable<Uint8Array>; format: RewardFileFormat }> {
  let chosen: RewardFileFormat | null;
  if (format !== undefined) {
    if (format !== 'jsonl' && format !== 'csv')
      throw new UsageError(`--format must be jsonl or csv, got ${JSON.stringify(format)}`);
    chosen = format;
  } else {
    chosen = file === '-' ? null : formatFromFileName(file);
    if (!chosen) {
      throw new UsageError(
        file === '-'
          ? 'reading standard input: say its format with --format jsonl or --format csv'
          : `cannot tell the format of ${file} from its extension (.jsonl, .ndjson or .csv): pass --format jsonl or --format csv`,
      );
    }
  }
  if (file === '-') return { stream: process.stdin, format: chosen };
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new UsageError(`${file} is not a file`);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`,
    );
  }
  return { stream: createReadStream(file, { highWaterMark: 1 << 16 }), format: chosen };
}

/** Validates and enqueues a reward file as one batch. */
export async function enqueueFile(producer: RewardProducer, flags: EnqueueFlags): Promise<EnqueueResult> {
  const { stream, format } = await openRewardFile(flags.file, flags.format);
  return producer.enqueue(readRewardFile(stream, format), {
    ...(flags.batchId !== undefined ? { batchId: flags.batchId } : {}),
    ...(flags.campaign !== undefined ? { campaignId: flags.campaign } : {}),
    ...(flags.priority !== undefined ? { priority: flags.priority } : {}),
  });
}

/** Shows progress until nothing of the batch is pending; returns the final report. */
export async function waitForBatch(pool: pg.Pool, batchId: string, signal?: AbortSignal): Promise<BatchReport> {
  return watchBatch(
    async () => {
      const report = await getBatchReport(pool, batchId);
      if (!report) throw new Error(`batch ${batchId} disappeared while waiting`);
      return report;
    },
    signal ? { signal } : {},
  );
}
