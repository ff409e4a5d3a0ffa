import { validateReward } from '../rewards/reward.js';
import type { SourceRecord } from '../rewards/reward-sources.js';
import { BatchConflictError, BatchValidationError } from './batch-errors.js';
import { digestComparableWith } from './content-digest.js';
import { RowErrorReport } from './row-error-report.js';
import type { StagedBatch } from './stage-batch.js';

/**
 * Checks that `records` are the rewards of the recorded `batch` (the same set, ADR 0005), reading and validating
 * them as staging does but writing nothing. Streams: memory does not grow with the input.
 * @throws {@link BatchValidationError} when a row is invalid (as a new batch would be refused).
 * @throws {@link BatchConflictError} when the rewards differ from the recorded ones.
 */
export async function confirmSameContent(records: AsyncIterable<SourceRecord>, batch: StagedBatch, options: { readonly maxRows: number }): Promise<void> {
  const report = new RowErrorReport();
  const digest = digestComparableWith(batch.contentDigest);
  let rowsRead = 0;
  for await (const record of records) {
    rowsRead += 1;
    if (rowsRead > options.maxRows) {
      throw new BatchValidationError(report, rowsRead, `batch refused: it has more than ${options.maxRows} rewards (WINDFALL_MAX_BATCH_ROWS); split it into smaller batches`);
    }
    if (record.error) {
      report.addRow([record.error]);
      continue;
    }
    const check = validateReward(record.value, record.row);
    if (!check.ok) report.addRow(check.errors);
    else digest.add(check.reward);
  }
  if (rowsRead === 0 && report.totalErrors === 0) throw new BatchValidationError([], 0, 'batch refused: it has no rewards');
  if (report.totalErrors > 0) throw new BatchValidationError(report, rowsRead);
  if (digest.value() !== batch.contentDigest) throw new BatchConflictError(batch.batchId, batch.total, rowsRead);
}
