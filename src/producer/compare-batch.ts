import type { SourceRecord } from '../rewards/reward-sources.js';
import { BatchConflictError } from '../rewards/batch-errors.js';
import { BatchReader } from '../rewards/batch-reader.js';
import { digestComparableWith } from '../staging/content-digest.js';
import type { StagedBatch } from '../staging/stage-batch.js';

/**
 * Checks that `records` are the rewards of the recorded `batch` (the same set, ADR 0005), reading and validating
 * them as staging does but writing nothing. Streams: memory does not grow with the input.
 * @throws {@link BatchValidationError} when a row is invalid (as a new batch would be refused).
 * @throws {@link BatchConflictError} when the rewards differ from the recorded ones.
 */
export async function confirmSameContent(
  records: AsyncIterable<SourceRecord>,
  batch: StagedBatch,
  options: { readonly maxRows: number },
): Promise<void> {
  const reader = new BatchReader(options.maxRows);
  const digest = digestComparableWith(batch.contentDigest);
  for await (const record of records) {
    const reward = reader.accept(record);
    if (reward) digest.add(reward);
  }
  reader.refuseIfInvalid();
  if (digest.value() !== batch.contentDigest) throw new BatchConflictError(batch.batchId, batch.total, reader.rowsRead);
}
