import type { RowError } from './reward.js';
import { formatRowError } from './reward.js';
import { RowErrorReport, type ErrorCount, type RowErrorSummary } from './row-error-report.js';
import { WindfallError } from '../errors/windfall-error.js';

/** Most row errors quoted in an error message (the report lists more, see {@link BatchValidationError.errors}). */
const QUOTED_ERRORS = 20;

function plural(count: number, word: string): string {
  return `${count.toLocaleString('en-US')} ${word}${count === 1 ? '' : 's'}`;
}

/**
 * A batch was refused as a whole: nothing was enqueued or recorded. It lists the first 1,000 errors by row
 * (`errors`), counts every error per field and code (`summary`), and gives the totals — in bounded memory whatever
 * the size of the batch.
 */
export class BatchValidationError extends WindfallError implements RowErrorSummary {
  static override readonly code = 'BATCH_INVALID';
  override readonly name = 'BatchValidationError';
  readonly errors: readonly RowError[];
  readonly summary: readonly ErrorCount[];
  readonly totalErrors: number;
  readonly badRows: number;

  /**
   * @param report the errors (a {@link RowErrorReport}, or a few errors as a list)
   * @param rowsRead rows read before the batch was refused
   * @param message replaces the default first line `batch refused: N invalid rows out of M; …`
   */
  constructor(
    report: RowErrorReport | readonly RowError[],
    readonly rowsRead: number,
    message?: string,
  ) {
    const { errors, summary, totalErrors, badRows } = (
      Array.isArray(report) ? reportOf(report as readonly RowError[]) : (report as RowErrorReport)
    ).summarize();
    const quoted = errors.slice(0, QUOTED_ERRORS).map(formatRowError).join('\n  ');
    const more = totalErrors > QUOTED_ERRORS ? `\n  … and ${plural(totalErrors - QUOTED_ERRORS, 'more error')}` : '';
    const counted = totalErrors === badRows ? '' : ` (${plural(totalErrors, 'error')})`;
    super(
      message ??
        `batch refused: ${plural(badRows, 'invalid row')} out of ${rowsRead.toLocaleString('en-US')}${counted}; nothing was enqueued. Fix the rows and enqueue again.\n  ${quoted}${more}`,
    );
    this.errors = errors;
    this.summary = summary;
    this.totalErrors = totalErrors;
    this.badRows = badRows;
  }

  /** The first line of the message: the rows are in {@link details}. */
  override answerMessage(): string {
    return this.message.split('\n')[0]!;
  }

  /** The fields a CLI `--json` error and an HTTP 400 carry besides `error` and `message`: {@link details}. */
  override answerFields(): RowErrorSummary & { readonly rowsRead: number } {
    return this.details();
  }

  /** The errors (the first 1,000), their counts per field and code, and the totals. */
  details(): RowErrorSummary & { readonly rowsRead: number } {
    return {
      errors: this.errors,
      summary: this.summary,
      totalErrors: this.totalErrors,
      badRows: this.badRows,
      rowsRead: this.rowsRead,
    };
  }
}

/** A report of a few errors, grouped into rows. */
function reportOf(errors: readonly RowError[]): RowErrorReport {
  const report = new RowErrorReport();
  let row: RowError[] = [];
  for (const error of errors) {
    if (row.length > 0 && row[0]!.row !== error.row) {
      report.addRow(row);
      row = [];
    }
    row.push(error);
  }
  report.addRow(row);
  return report;
}

/**
 * A known batchId was enqueued with other rewards than the ones recorded under it (ADR 0005): refused, and nothing
 * of the new input was recorded. CLI exit 2, HTTP 409 `batch conflict`.
 */
export class BatchConflictError extends WindfallError {
  static override readonly code = 'BATCH_CONFLICT';
  override readonly name = 'BatchConflictError';
  constructor(
    readonly batchId: string,
    /** Rewards recorded under the batchId. */
    readonly recordedTotal: number,
    /** Rows of the refused input. */
    readonly rowsRead: number,
    message?: string,
  ) {
    super(
      message ??
        `batch ${JSON.stringify(batchId)} already exists with different rewards (${plural(recordedTotal, 'reward')} recorded; this input has ${plural(rowsRead, 'row')}): nothing of this input was recorded. A batchId names one set of rewards: send new rewards under a new batchId; to repeat the batch, send exactly its rewards (in any order).`,
    );
  }
}
