import type { DeadLetterReason } from '../db/schema.js';
import type { DeadLetterFilter } from './dead-letter-store.js';
import { DEAD_LETTER_REASONS } from '../db/stored-values.js';
import { WindfallError } from '../errors/windfall-error.js';

/**
 * Most entry ids one request may name (CLI arguments, an HTTP body, a console action): a bigger list is refused
 * (exit 2, HTTP 400), never cut. A filter (`--reason`, `--batch`, `--all`) selects any number of entries.
 */
export const MAX_IDS_PER_REQUEST = 1000;

/** How an operator names the dead-letter entries to replay or purge (CLI flags, HTTP body). */
export interface DeadLetterSelection {
  /** Entry ids (digit strings), at most {@link MAX_IDS_PER_REQUEST}. Excludes the other selectors. */
  readonly ids?: readonly string[];
  /** Every open entry. Excludes the other selectors. */
  readonly all?: boolean;
  /** Open entries with this reason (combines with `batchId`). */
  readonly reason?: string;
  /** Open entries of this batch (combines with `reason`). */
  readonly batchId?: string;
}

/** A selection that names nothing, or names it in two exclusive ways; the message says what to pass. */
export class DeadLetterSelectionError extends WindfallError {
  static override readonly code = 'REQUEST_INVALID';
  override readonly name = 'DeadLetterSelectionError';
  constructor(
    message: string,
    /** The offending field (`ids`, `all`, `reason`, `batchId`), for per-field error reports. */
    override readonly field: string,
  ) {
    super(message);
  }
}

/** True when `value` is a contract dead-letter reason. */
export function isDeadLetterReason(value: unknown): value is DeadLetterReason {
  return typeof value === 'string' && (DEAD_LETTER_REASONS as readonly string[]).includes(value);
}

/**
 * Turns a selection into a filter. Exactly one of: ids (at most {@link MAX_IDS_PER_REQUEST}); all; reason and/or batchId. `required` = false allows an
 * empty selection, which then means every open entry (purge's default).
 * @throws {@link DeadLetterSelectionError}
 */
export function selectionFilter(
  selection: DeadLetterSelection,
  options: { required?: boolean } = {},
): DeadLetterFilter {
  const ids = selection.ids ?? [];
  const hasFilter = selection.reason !== undefined || selection.batchId !== undefined;
  const ways = [ids.length > 0, selection.all === true, hasFilter].filter(Boolean).length;
  if (ways > 1) {
    throw new DeadLetterSelectionError(
      'name entries in one way only: ids, or all, or a reason and/or a batch',
      ids.length > 0 ? 'ids' : 'all',
    );
  }
  if (ways === 0 && (options.required ?? true)) {
    throw new DeadLetterSelectionError('say which entries: ids, all, a reason or a batch', 'ids');
  }
  if (ids.length > MAX_IDS_PER_REQUEST) {
    throw new DeadLetterSelectionError(
      `at most ${MAX_IDS_PER_REQUEST} entry ids in one request, got ${ids.length}: split the list, or select by reason or batch`,
      'ids',
    );
  }
  for (const id of ids) {
    if (!/^\d{1,18}$/.test(id))
      throw new DeadLetterSelectionError(`dead-letter ids are whole numbers, got ${JSON.stringify(id)}`, 'ids');
  }
  if (selection.reason !== undefined && !isDeadLetterReason(selection.reason)) {
    throw new DeadLetterSelectionError(
      `reason must be one of ${DEAD_LETTER_REASONS.join(', ')}, got ${JSON.stringify(selection.reason)}`,
      'reason',
    );
  }
  if (selection.batchId !== undefined && selection.batchId === '')
    throw new DeadLetterSelectionError('batchId must not be empty', 'batchId');
  if (ids.length > 0) return { ids: [...new Set(ids)] };
  return {
    ...(selection.reason !== undefined ? { reason: selection.reason } : {}),
    ...(selection.batchId !== undefined ? { batchId: selection.batchId } : {}),
  };
}
