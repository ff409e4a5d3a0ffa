import { classifyDatabaseError, sqlStateOf } from '../db/pg-errors.js';
import type { DeadLetterReason } from '../db/schema.js';
import { LockBusyError, LockTimeoutError } from '../lock/lock-errors.js';
import { isRedisUnavailable } from '../services/redis-errors.js';
import { InsufficientFundsError, InvalidOperationError } from './wallet-errors.js';

/** Why a user's operations could not be applied, and whether trying again later may help. */
export interface WalletFailure {
  readonly reason: DeadLetterReason;
  /** True when a later attempt may succeed (busy lock, dropped connection, deadlock). */
  readonly transient: boolean;
  /** True when the caller cancelled (shutdown, deadline): not a failure of the user's rewards at all. */
  readonly interrupted: boolean;
  readonly message: string;
  readonly error: unknown;
}

/** Sorts an error thrown by one user's wallet call into a dead-letter reason and transient/permanent. */
export function classifyWalletFailure(error: unknown): WalletFailure {
  const message = error instanceof Error ? error.message : String(error);
  const of = (reason: DeadLetterReason, transient: boolean, interrupted = false): WalletFailure => ({
    reason,
    transient,
    interrupted,
    message,
    error,
  });
  if (error instanceof LockBusyError) return of('LOCK_BUSY', true);
  if (error instanceof LockTimeoutError) return of('LOCK_BUSY', true, true);
  if (error instanceof InsufficientFundsError) return of('INSUFFICIENT_FUNDS', false);
  if (error instanceof InvalidOperationError) return of('INVALID', false);
  if (isRedisUnavailable(error)) return of('UNKNOWN', true);
  const kind = classifyDatabaseError(error);
  // a PostgreSQL error (a SQLSTATE), or a connection that failed
  if (sqlStateOf(error) !== undefined || kind === 'unavailable') {
    switch (kind) {
      case 'unavailable':
      case 'retry':
      case 'lock_timeout':
        return of('DB_ERROR', true);
      case 'insufficient_funds':
        return of('INSUFFICIENT_FUNDS', false);
      case 'invalid':
        return of('INVALID', false);
      default:
        return of('DB_ERROR', false);
    }
  }
  return of('UNKNOWN', true);
}
