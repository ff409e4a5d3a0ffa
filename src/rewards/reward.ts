import { checkAmount } from '../money/amount.js';
import { descriptionProblem, identifierProblem } from './field-rules.js';

/** A validated reward: credit `amount` minor units to `uid`, at most once per `rewardId`. */
export interface Reward {
  /** 1–128 characters; the idempotency key. */
  readonly rewardId: string;
  /** 1–128 characters. */
  readonly uid: string;
  /** Positive minor units, at most 9007199254740991. */
  readonly amount: bigint;
  /** At most 500 characters. */
  readonly description: string | null;
}

/** The fields of a reward a producer may send. */
export const REWARD_FIELDS = ['rewardId', 'uid', 'amount', 'description'] as const;

/** One reason a row was refused. `row` is 1-based: the line of a file, or the position in a `rewards` array. */
export interface RowError {
  readonly row: number;
  readonly field: string;
  readonly reason: string;
}

/** The outcome of {@link validateReward}: the reward, or every problem of the row. */
export type RewardCheck = { readonly ok: true; readonly reward: Reward } | { readonly ok: false; readonly errors: RowError[] };

/**
 * Validates one raw reward (an object from JSON or CSV) against the contract: rewardId and uid 1–128 characters,
 * amount a positive whole number of minor units (JSON integer or digit string, ≤ 2^53 − 1), description ≤ 500
 * characters, no other fields. Reports every problem of the row, not only the first.
 */
export function validateReward(raw: unknown, row: number): RewardCheck {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return {
      ok: false,
      errors: [{ row, field: 'row', reason: `must be an object with rewardId, uid and amount, got ${Array.isArray(raw) ? 'an array' : raw === null ? 'null' : typeof raw}` }],
    };
  }
  const record = raw as Record<string, unknown>;
  const errors: RowError[] = [];
  for (const field of Object.keys(record)) {
    if (!(REWARD_FIELDS as readonly string[]).includes(field)) {
      errors.push({ row, field, reason: `is not a reward field (expected ${REWARD_FIELDS.join(', ')})` });
    }
  }
  const rewardIdProblem = identifierProblem(record['rewardId']);
  if (rewardIdProblem) errors.push({ row, field: 'rewardId', reason: rewardIdProblem });
  const uidProblem = identifierProblem(record['uid']);
  if (uidProblem) errors.push({ row, field: 'uid', reason: uidProblem });
  const amount = checkAmount(record['amount']);
  if (!amount.ok) errors.push({ row, field: 'amount', reason: amount.reason });
  const description = record['description'];
  const descProblem = descriptionProblem(description);
  if (descProblem) errors.push({ row, field: 'description', reason: descProblem });
  if (errors.length > 0 || !amount.ok) return { ok: false, errors };
  return {
    ok: true,
    reward: {
      rewardId: record['rewardId'] as string,
      uid: record['uid'] as string,
      amount: amount.value,
      description: typeof description === 'string' && description !== '' ? description : null,
    },
  };
}

/** Formats a row error for people: `row 12, amount: must be greater than zero`. */
export function formatRowError(error: RowError): string {
  return `row ${error.row}, ${error.field}: ${error.reason}`;
}
