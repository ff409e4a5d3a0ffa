import type { Reward } from './reward.js';
import { validateReward } from './reward.js';
import type { SourceRecord } from './reward-sources.js';
import { BatchValidationError } from './batch-errors.js';
import { RowErrorReport } from './row-error-report.js';

/**
 * Reads a batch's records one by one as staging and the same-content check both do: counts the rows, refuses a batch
 * over `maxRows`, validates each reward, and collects every bad row in a bounded {@link RowErrorReport}.
 */
export class BatchReader {
  rowsRead = 0;
  readonly report = new RowErrorReport();

  constructor(private readonly maxRows: number) {}

  /**
   * The reward of `record`, or null when its row is refused (recorded in {@link report}).
   * @throws {@link BatchValidationError} once the batch has more than `maxRows` rows.
   */
  accept(record: SourceRecord): Reward | null {
    this.rowsRead += 1;
    if (this.rowsRead > this.maxRows) {
      throw new BatchValidationError(
        this.report,
        this.rowsRead,
        `batch refused: it has more than ${this.maxRows} rewards (WINDFALL_MAX_BATCH_ROWS); split it into smaller batches`,
      );
    }
    if (record.error) {
      this.report.addRow([record.error]);
      return null;
    }
    const check = validateReward(record.value, record.row);
    if (!check.ok) {
      this.report.addRow(check.errors);
      return null;
    }
    return check.reward;
  }

  /** @throws {@link BatchValidationError} when the batch has no rewards, or any row was refused. */
  refuseIfInvalid(): void {
    if (this.rowsRead === 0 && this.report.totalErrors === 0)
      throw new BatchValidationError([], 0, 'batch refused: it has no rewards');
    if (this.report.totalErrors > 0) throw new BatchValidationError(this.report, this.rowsRead);
  }
}
