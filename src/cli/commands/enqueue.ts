import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { getBatchReport } from '../../batch/batch-status.js';
import type { BatchReport } from '../../batch/batch-status.js';
import type { EnqueueResult } from '../../queue/reward-producer.js';
import type { RewardFileFormat } from '../../rewards/reward-sources.js';
import { formatFromFileName, readRewardFile } from '../../rewards/reward-sources.js';
import type { Windfall } from '../../runtime/windfall.js';
import { UsageError } from '../exit-codes.js';
import { watchBatch } from '../progress.js';

/** Flags of `windfall enqueue`. */
export interface EnqueueFlags {
  readonly file: string;
  readonly format?: string;
  readonly batchId?: string;
}

/** Opens the file (or standard input for `-`) and picks its format. */
export async function openRewardFile(file: string, format?: string): Promise<{ stream: AsyncIterable<Uint8Array>; format: RewardFileFormat }> {
  let chosen: RewardFileFormat | null;
  if (format !== undefined) {
    if (format !== 'jsonl' && format !== 'csv') throw new UsageError(`--format must be jsonl or csv, got ${JSON.stringify(format)}`);
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
    throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  return { stream: createReadStream(file, { highWaterMark: 1 << 16 }), format: chosen };
}

/** Validates and enqueues a reward file as one batch. */
export async function enqueueFile(windfall: Windfall, flags: EnqueueFlags): Promise<EnqueueResult> {
  const { stream, format } = await openRewardFile(flags.file, flags.format);
  return windfall.producer.enqueue(readRewardFile(stream, format), flags.batchId !== undefined ? { batchId: flags.batchId } : {});
}

/** Shows progress until nothing of the batch is pending; returns the final report. */
export async function waitForBatch(windfall: Windfall, batchId: string, signal?: AbortSignal): Promise<BatchReport> {
  return watchBatch(
    async () => {
      const report = await getBatchReport(windfall.database.pool, batchId);
      if (!report) throw new Error(`batch ${batchId} disappeared while waiting`);
      return report;
    },
    signal ? { signal } : {},
  );
}
