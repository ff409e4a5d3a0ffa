import type { LedgerKind } from '../db/schema.js';

/** One change to a wallet, identified by an idempotency key. */
export interface LedgerOperation {
  /** The idempotency key: applied at most once, ever (`rewardId` for rewards). */
  readonly operationId: string;
  /** Signed minor units: positive credits, negative debits; never zero. */
  readonly amount: bigint;
  readonly kind: LedgerKind;
  readonly description?: string | null;
}

/** What became of one operation in a user's transaction. */
export type OperationOutcome =
  /** Written now. */
  | 'applied'
  /** Written earlier by the same batch (a retried or re-run job): counts as applied, not credited again. */
  | 'already_applied'
  /** Written earlier by another batch or call with the same user and amount: not credited again. */
  | 'duplicate'
  /** The id was used before with another user or amount: refused. */
  | 'conflict';

/** The ledger row an operation id already has. */
export interface ExistingEntry {
  readonly uid: string;
  readonly amount: bigint;
  readonly batchId: string | null;
}

/** Per-operation outcome of {@link LedgerOperation}s applied for one user. */
export interface OperationResult {
  readonly operationId: string;
  readonly outcome: OperationOutcome;
  /** For conflicts: what the ledger holds under that id. */
  readonly existing?: ExistingEntry;
}

/**
 * Decides what an operation is, given the ledger entry its id already has.
 * Same user and amount: `already_applied` when the same batch wrote it, else `duplicate`; otherwise `conflict`.
 * The settlement statements judge with {@link classifyExistingSql}, the same rule in SQL
 * (`test/classify-existing.test.ts` holds the two to the same answers).
 */
export function classifyExisting(
  uid: string,
  amount: bigint,
  batchId: string | null,
  existing: ExistingEntry,
): Exclude<OperationOutcome, 'applied'> {
  if (existing.uid !== uid || existing.amount !== amount) return 'conflict';
  if (batchId !== null && existing.batchId === batchId) return 'already_applied';
  return 'duplicate';
}

/**
 * {@link classifyExisting} as a SQL expression, for statements that judge many rewards at once: `entry` is the
 * alias of the `ledger_entries` row the id already has, `input` the alias of a row with the operation's `uid`,
 * `amount` and `batch_id` (a null batch id never matches, as in TypeScript). Answers the same words.
 */
export function classifyExistingSql(entry: string, input: string): string {
  return `case when ${entry}.uid = ${input}.uid and ${entry}.amount = ${input}.amount then
                case when ${entry}.batch_id = ${input}.batch_id then 'already_applied' else 'duplicate' end
              else 'conflict' end`;
}

/** Says how a conflicting entry differs, for people. */
export function describeConflict(uid: string, amount: bigint, existing: ExistingEntry): string {
  const parts: string[] = [];
  if (existing.uid !== uid)
    parts.push(`it was applied to user ${JSON.stringify(existing.uid)}, not ${JSON.stringify(uid)}`);
  if (existing.amount !== amount) parts.push(`with amount ${existing.amount}, not ${amount}`);
  return `${parts.join(' ')}${existing.batchId ? ` (batch ${JSON.stringify(existing.batchId)})` : ''}`;
}
