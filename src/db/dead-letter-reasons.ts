import type { DeadLetterReason } from './schema.js';

/** The dead-letter reasons of the contract (the values `dead_letters.reason` holds). */
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = [
  'LOCK_BUSY',
  'CONFLICT',
  'INVALID',
  'DB_ERROR',
  'INSUFFICIENT_FUNDS',
  'UNKNOWN',
];
