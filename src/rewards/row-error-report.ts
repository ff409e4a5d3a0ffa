import type { RowError } from './reward.js';
import { ROW_PROBLEMS, type RowProblemCode } from './row-problems.js';

/** Row errors a refused batch lists one by one (the first ones by row); all of them are counted. */
export const LISTED_ERRORS = 1000;
/** Most (field, code) groups a summary keeps apart; later groups are counted under the field `*`. */
const MAX_SUMMARY_GROUPS = 100;

/** How many errors of a batch share a field and a code. */
export interface ErrorCount {
  readonly field: string;
  readonly code: RowProblemCode;
  /** The code's short reason ({@link ROW_PROBLEMS}). */
  readonly reason: string;
  readonly count: number;
}

/** What a refused batch reports: the first errors by row, every error counted per field and code, and totals. */
export interface RowErrorSummary {
  /** The first {@link LISTED_ERRORS} errors, by row (a row's errors in the order found). */
  readonly errors: readonly RowError[];
  /** Every error, counted per field and code, most frequent first. */
  readonly summary: readonly ErrorCount[];
  readonly totalErrors: number;
  /** Rows with at least one error. */
  readonly badRows: number;
}

/**
 * Collects the errors of a batch in bounded memory, whatever their number: it keeps the first
 * {@link LISTED_ERRORS} by row (errors may arrive out of row order) and counts every one per field and code.
 */
export class RowErrorReport {
  private listed: RowError[] = [];
  /** Once the list was cut: errors of later rows can no longer be among the first ones. */
  private cutoffRow = Number.POSITIVE_INFINITY;
  private readonly groups = new Map<string, { field: string; code: RowProblemCode; count: number }>();
  private errorCount = 0;
  private rowCount = 0;

  /** Adds every error of one bad row. */
  addRow(errors: readonly RowError[]): void {
    if (errors.length === 0) return;
    this.rowCount += 1;
    for (const error of errors) {
      this.errorCount += 1;
      this.count(error.field, error.code, 1);
      if (error.row <= this.cutoffRow) this.listed.push(error);
    }
    if (this.listed.length >= 2 * LISTED_ERRORS) this.cut();
  }

  /** Counts `rows` bad rows of one error each that are not listed (they come after the listed ones). */
  addCounted(field: string, code: RowProblemCode, rows: number): void {
    if (rows <= 0) return;
    this.rowCount += rows;
    this.errorCount += rows;
    this.count(field, code, rows);
  }

  get totalErrors(): number {
    return this.errorCount;
  }

  get badRows(): number {
    return this.rowCount;
  }

  /** The report as it stands. */
  summarize(): RowErrorSummary {
    this.cut();
    const summary = [...this.groups.values()]
      .map((group) => ({ field: group.field, code: group.code, reason: ROW_PROBLEMS[group.code], count: group.count }))
      .sort((a, b) => b.count - a.count || a.field.localeCompare(b.field) || a.code.localeCompare(b.code));
    return { errors: [...this.listed], summary, totalErrors: this.errorCount, badRows: this.rowCount };
  }

  private count(field: string, code: RowProblemCode, count: number): void {
    let key = `${field}\u0000${code}`;
    let group = this.groups.get(key);
    if (!group && this.groups.size >= MAX_SUMMARY_GROUPS) {
      key = `*\u0000${code}`;
      group = this.groups.get(key);
    }
    if (group) group.count += count;
    else this.groups.set(key, { field: key.slice(0, key.indexOf('\u0000')), code, count });
  }

  /** Keeps the first {@link LISTED_ERRORS} errors by row (a stable sort: a row's errors keep their order). */
  private cut(): void {
    this.listed.sort((a, b) => a.row - b.row);
    if (this.listed.length > LISTED_ERRORS) this.listed.length = LISTED_ERRORS;
    if (this.listed.length === LISTED_ERRORS) this.cutoffRow = this.listed[LISTED_ERRORS - 1]!.row;
  }
}
