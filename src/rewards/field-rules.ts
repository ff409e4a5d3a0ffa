import { problem, type Problem } from './row-problems.js';

/** Longest rewardId, uid or batchId, in characters (Unicode code points). */
export const MAX_ID_LENGTH = 128;
/** Longest description, in characters. */
export const MAX_DESCRIPTION_LENGTH = 500;

// C0 controls and DEL: invisible in logs and tables, and NUL cannot be stored by PostgreSQL.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Printable ASCII without leading or trailing space: no control character, no broken Unicode, nothing to trim. */
const PLAIN_IDENTIFIER = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;
const NUL_OR_SURROGATE = /[\u0000\ud800-\udfff]/;

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

/**
 * Checks an identifier (rewardId, uid, batchId): a string of 1–128 characters, without control characters,
 * broken Unicode, or leading/trailing white space (which would silently make " u1" another user than "u1").
 * Returns why it is refused, or null when it is fine.
 */
export function identifierProblem(value: unknown): Problem | null {
  // the common case, decided at once: 1–128 printable ASCII characters, not starting or ending with a space
  if (typeof value === 'string' && value.length <= MAX_ID_LENGTH && PLAIN_IDENTIFIER.test(value)) return null;
  if (value === undefined || value === null) return problem('missing');
  if (typeof value !== 'string')
    return problem('not_string', `must be a string, got ${Array.isArray(value) ? 'array' : typeof value}`);
  if (value.length === 0) return problem('empty');
  const length = codePoints(value);
  if (length > MAX_ID_LENGTH)
    return problem('id_too_long', `is ${length} characters long; at most ${MAX_ID_LENGTH} are allowed`);
  if (CONTROL_CHARACTER.test(value)) return problem('control_character');
  if (LONE_SURROGATE.test(value)) return problem('invalid_unicode');
  if (value.trim() !== value) return problem('surrounding_space');
  return null;
}

/** The prefix of the operation ids of batch reverts' debits (`revert:<rewardId>`): no reward or operation may use it. */
export const REVERT_ID_PREFIX = 'revert:';

/** Checks a rewardId (or a wallet operation id): an identifier that does not start with {@link REVERT_ID_PREFIX}. */
export function rewardIdProblem(value: unknown): Problem | null {
  const problemOfId = identifierProblem(value);
  if (problemOfId) return problemOfId;
  return typeof value === 'string' && value.startsWith(REVERT_ID_PREFIX) ? problem('reserved_id') : null;
}

/**
 * Checks an optional description: absent, null, or a string of at most 500 characters without NUL or broken
 * Unicode. Returns why it is refused, or null.
 */
export function descriptionProblem(value: unknown): Problem | null {
  // the common case: at most 500 UTF-16 units (so at most 500 characters), no NUL, no surrogate at all
  if (typeof value === 'string' && value.length <= MAX_DESCRIPTION_LENGTH && !NUL_OR_SURROGATE.test(value)) return null;
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') return problem('not_string', `must be a string, got ${typeof value}`);
  const length = codePoints(value);
  if (length > MAX_DESCRIPTION_LENGTH)
    return problem(
      'description_too_long',
      `is ${length} characters long; at most ${MAX_DESCRIPTION_LENGTH} are allowed`,
    );
  if (value.includes('\u0000')) return problem('nul_character');
  if (LONE_SURROGATE.test(value)) return problem('invalid_unicode');
  return null;
}
