import { checkAmount } from '../money/amount.js';
import { descriptionProblem, identifierProblem, rewardIdProblem } from './field-rules.js';
import type { RowProblemCode } from './row-problems.js';

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

/**
 * One reason a row was refused. `row` is 1-based: the line of a file, or the position in a `rewards` array (0: the
 * batch itself). `code` is stable (see `ROW_PROBLEMS`); `reason` says it for people, with details.
 */
export interface RowError {
  readonly row: number;
  readonly field: string;
  readonly code: RowProblemCode;
  readonly reason: string;
}

/** Unknown fields named per row; more are reported as one error (a row of 10,000 stray keys is one mistake). */
const MAX_UNKNOWN_FIELDS_NAMED = 3;
/** Longest field name quoted in an error, in UTF-16 units. */
const MAX_FIELD_NAME_SHOWN = 64;

function shownFieldName(name: string): string {
  return name.length > MAX_FIELD_NAME_SHOWN ? `${name.slice(0, MAX_FIELD_NAME_SHOWN)}…` : name;
}

/** The outcome of {@link validateReward}: the reward, or every problem of the row. */
export type RewardCheck =
  { readonly ok: true; readonly reward: Reward } | { readonly ok: false; readonly errors: RowError[] };

/**
 * Validates one raw reward (an object from JSON or CSV) against the contract: rewardId and uid 1–128 characters,
 * amount a positive whole number of minor units (JSON integer or digit string, ≤ 2^53 − 1), description ≤ 500
 * characters, no other fields. Reports every problem of the row, not only the first (unknown fields: the first
 * three by name, the others together).
 */
export function validateReward(raw: unknown, row: number): RewardCheck {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    return {
      ok: false,
      errors: [
        {
          row,
          field: 'row',
          code: 'not_object',
          reason: `must be an object with rewardId, uid and amount, got ${Array.isArray(raw) ? 'an array' : raw === null ? 'null' : typeof raw}`,
        },
      ],
    };
  }
  const record = raw as Record<string, unknown>;
  const errors: RowError[] = [];
  let unknown = 0;
  for (const field of Object.keys(record)) {
    if (!(REWARD_FIELDS as readonly string[]).includes(field)) {
      unknown += 1;
      if (unknown <= MAX_UNKNOWN_FIELDS_NAMED) {
        errors.push({
          row,
          field: shownFieldName(field),
          code: 'unknown_field',
          reason: `is not a reward field (expected ${REWARD_FIELDS.join(', ')})`,
        });
      }
    }
  }
  if (unknown > MAX_UNKNOWN_FIELDS_NAMED) {
    const more = unknown - MAX_UNKNOWN_FIELDS_NAMED;
    errors.push({
      row,
      field: 'row',
      code: 'unknown_field',
      reason: `has ${more} more field${more === 1 ? '' : 's'} that are not reward fields`,
    });
  }
  const idProblem = rewardIdProblem(record['rewardId']);
  if (idProblem) errors.push({ row, field: 'rewardId', ...idProblem });
  const uidProblem = identifierProblem(record['uid']);
  if (uidProblem) errors.push({ row, field: 'uid', ...uidProblem });
  const amount = checkAmount(record['amount']);
  if (!amount.ok) errors.push({ row, field: 'amount', code: amount.code, reason: amount.reason });
  const description = record['description'];
  const descProblem = descriptionProblem(description);
  if (descProblem) errors.push({ row, field: 'description', ...descProblem });
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
