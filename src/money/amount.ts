/**
 * Money in Windfall is a positive whole number of minor units (cents) held as a `bigint`, never a float.
 * In JSON it travels as a string of digits.
 */

/** The largest amount a single reward may carry: 2^53 − 1 minor units. */
export const MAX_REWARD_AMOUNT = 9_007_199_254_740_991n;

/** The text of a JSON number exactly as written, kept so that `100.0` and `1e2` can be told from `100`. */
export class JsonNumber {
  constructor(readonly raw: string) {}
  toJSON(): number {
    return Number(this.raw);
  }
}

/**
 * The result of checking an amount: the value, or why it was refused — a stable code (see `ROW_PROBLEMS`) and a
 * sentence fragment for row errors.
 */
export type AmountCheck =
  | { readonly ok: true; readonly value: bigint }
  | { readonly ok: false; readonly code: AmountProblemCode; readonly reason: string };

/** The codes an amount is refused with. */
export type AmountProblemCode =
  | 'missing'
  | 'empty'
  | 'amount_zero'
  | 'amount_negative'
  | 'amount_fraction'
  | 'amount_exponent'
  | 'amount_too_large'
  | 'amount_not_whole'
  | 'amount_not_digits'
  | 'amount_wrong_type';

const refuse = (code: AmountProblemCode, reason: string): AmountCheck => ({ ok: false, code, reason });

function checkDigits(text: string, written: string): AmountCheck {
  if (text.length > 30)
    return refuse('amount_too_large', `must be at most ${MAX_REWARD_AMOUNT} (got ${text.length} digits)`);
  const value = BigInt(text);
  if (value === 0n) return refuse('amount_zero', 'must be greater than zero');
  if (value > MAX_REWARD_AMOUNT)
    return refuse('amount_too_large', `must be at most ${MAX_REWARD_AMOUNT}, got ${written}`);
  return { ok: true, value };
}

function checkNumberText(text: string, kind: 'string' | 'number'): AmountCheck {
  if (text === '') return refuse('empty', 'is empty');
  if (/^\d+$/.test(text)) return checkDigits(text, text);
  // only refusals quote what was written
  const shown = JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) {
    if (/[eE]/.test(text))
      return refuse(
        'amount_exponent',
        `exponents are not accepted (got ${shown}); write the whole number of minor units`,
      );
    if (text.startsWith('-')) return refuse('amount_negative', `must be positive, got ${shown}`);
    if (text.includes('.')) {
      return refuse(
        'amount_fraction',
        `fractions are not accepted (got ${shown}); amounts are whole minor units (cents)`,
      );
    }
    return refuse('amount_not_digits', `must be digits only, got ${shown}`);
  }
  if (/^[+-]?(nan|infinity|inf)$/i.test(text))
    return refuse('amount_not_whole', `must be a whole number, got ${shown}`);
  return refuse(
    kind === 'string' ? 'amount_not_digits' : 'amount_not_whole',
    kind === 'string'
      ? `must be a string of digits, got ${shown}`
      : `must be a whole number of minor units, got ${shown}`,
  );
}

/**
 * Checks an amount given as a JSON integer ({@link JsonNumber}), a string of digits, a safe JS integer or a bigint.
 * Refuses fractions, floats, zero, negatives, exponents, NaN, anything above {@link MAX_REWARD_AMOUNT} and other types.
 */
export function checkAmount(input: unknown): AmountCheck {
  if (input instanceof JsonNumber) return checkNumberText(input.raw, 'number');
  if (typeof input === 'string') return checkNumberText(input, 'string');
  if (typeof input === 'bigint') {
    if (input <= 0n)
      return input === 0n
        ? refuse('amount_zero', 'must be greater than zero')
        : refuse('amount_negative', `must be positive, got ${input}`);
    if (input > MAX_REWARD_AMOUNT)
      return refuse('amount_too_large', `must be at most ${MAX_REWARD_AMOUNT}, got ${input}`);
    return { ok: true, value: input };
  }
  if (typeof input === 'number') {
    if (Number.isNaN(input) || !Number.isFinite(input))
      return refuse('amount_not_whole', `must be a whole number, got ${input}`);
    if (!Number.isInteger(input))
      return refuse(
        'amount_fraction',
        `fractions are not accepted (got ${input}); amounts are whole minor units (cents)`,
      );
    if (input <= 0)
      return input === 0
        ? refuse('amount_zero', 'must be greater than zero')
        : refuse('amount_negative', `must be positive, got ${input}`);
    if (!Number.isSafeInteger(input))
      return refuse(
        'amount_too_large',
        `must be at most ${MAX_REWARD_AMOUNT}; pass larger values as a string of digits`,
      );
    return { ok: true, value: BigInt(input) };
  }
  if (input === undefined || input === null) return refuse('missing', 'is missing');
  return refuse(
    'amount_wrong_type',
    `must be a whole number of minor units as a JSON integer or a string of digits, got ${typeof input}`,
  );
}

/** Parses an amount or throws a `RangeError` with the reason; see {@link checkAmount}. */
export function parseAmount(input: unknown): bigint {
  const check = checkAmount(input);
  if (!check.ok) throw new RangeError(`amount ${check.reason}`);
  return check.value;
}

/** Money for JSON and people: a string of digits (with a leading `-` for debits). */
export function formatAmount(value: bigint): string {
  return value.toString();
}
