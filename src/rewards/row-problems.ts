/**
 * Every way a row of a batch can be refused, by stable code, with the short reason a summary gives for it. A row
 * error's own `reason` may add details (a length, the value written, the row it repeats); its `code` never varies,
 * so that errors can be counted per field and code. The codes are part of the API: add new ones, never rename one.
 */
export const ROW_PROBLEMS = {
  // any field
  missing: 'is missing',
  not_string: 'is not a string',
  empty: 'is empty',
  invalid_unicode: 'is not valid Unicode',
  // rewardId, uid, batchId
  id_too_long: 'is longer than 128 characters',
  control_character: 'contains a control character',
  surrounding_space: 'has leading or trailing white space',
  reserved_id: 'starts with "revert:", which Windfall reserves for the debits of batch reverts',
  // description
  description_too_long: 'is longer than 500 characters',
  nul_character: 'contains a NUL character',
  // amount
  amount_zero: 'is zero',
  amount_negative: 'is negative',
  amount_fraction: 'is a fraction',
  amount_exponent: 'has an exponent',
  amount_too_large: 'is above 9007199254740991',
  amount_not_whole: 'is not a whole number',
  amount_not_digits: 'is not a string of digits',
  amount_wrong_type: 'is not a JSON integer or a string of digits',
  // the row as a whole
  not_object: 'is not a JSON object',
  unknown_field: 'is not a reward field',
  invalid_json: 'is not valid JSON',
  invalid_utf8: 'is not valid UTF-8',
  line_too_long: 'is longer than 1 MiB',
  csv_text_after_quote: 'has text after a closing quote',
  csv_stray_quote: 'has a quote inside an unquoted field',
  csv_unclosed_quote: 'has a quoted field that is never closed',
  csv_field_count: 'has another number of fields than the header',
  // the batch
  repeated_reward_id: 'repeats a rewardId of an earlier row',
  not_array: 'is not an array',
  invalid_priority: 'is not high, normal or low',
} as const;

/** A stable code of {@link ROW_PROBLEMS}. */
export type RowProblemCode = keyof typeof ROW_PROBLEMS;

/** Why a value is refused: the stable code, and the reason for people (with details). */
export interface Problem {
  readonly code: RowProblemCode;
  readonly reason: string;
}

/** A {@link Problem}. */
export function problem(code: RowProblemCode, reason: string = ROW_PROBLEMS[code]): Problem {
  return { code, reason };
}
