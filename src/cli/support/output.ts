import type { BatchValidationError } from '../../rewards/batch-errors.js';
import { formatRowError } from '../../rewards/reward.js';

/** Serializes a document for `--json`: bigint money becomes a string of digits. */
export function toJson(document: unknown): string {
  return JSON.stringify(document, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value), 2);
}

/** Writes one JSON document to standard output. */
export function printJson(document: unknown): void {
  process.stdout.write(`${toJson(document)}\n`);
}

/** Writes a line for people to standard output. */
export function printLine(text = ''): void {
  process.stdout.write(`${text}\n`);
}

/** Writes a line for people to standard error (notes, progress, errors). */
export function printNote(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** Formats rows as an aligned table with a header; numbers align right. */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly (string | number | null | undefined)[])[],
): string {
  const cells = rows.map((row) => row.map((cell) => (cell === null || cell === undefined ? '-' : String(cell))));
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...cells.map((row) => (row[column] ?? '').length)),
  );
  const numeric = headers.map(
    (_, column) => rows.length > 0 && rows.every((row) => typeof row[column] === 'number' || row[column] === null),
  );
  const line = (row: readonly string[]): string =>
    row
      .map((cell, column) => (numeric[column] ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n');
}

/** 1234567 → "1,234,567". */
export function formatCount(value: number): string {
  return value.toLocaleString('en-US');
}

/**
 * A refused batch for people (stderr): the first line of its message, every listed row error (unless `listRows` is
 * false: `--json` has them), and — when errors were left out of the list — each field and reason with its count.
 */
export function describeRefusedBatch(error: BatchValidationError, options: { listRows?: boolean } = {}): string {
  const lines = [`windfall: ${error.message.split('\n')[0]}`];
  if (options.listRows ?? true) lines.push(...error.errors.map((row) => `  ${formatRowError(row)}`));
  if (error.errors.length < error.totalErrors) {
    lines.push(
      `  … ${formatCount(error.totalErrors - error.errors.length)} more errors not listed. All ${formatCount(error.totalErrors)} errors (${formatCount(error.badRows)} bad rows) by field and reason:`,
    );
    for (const group of error.summary)
      lines.push(`    ${group.field}: ${group.reason} [${group.code}] × ${formatCount(group.count)}`);
  }
  return lines.join('\n');
}
