import type { Logger } from '../log/logger.js';
import type { LockPolicy } from '../lock/lock-policy.js';
import type { UserLocks } from '../lock/user-locks.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { Queryable, UserApplyResult } from './apply-user-operations.js';
import { applyUserOperations } from './apply-user-operations.js';
import type { LedgerOperation } from '../ledger/ledger-operation.js';
import { InsufficientFundsError, InvalidOperationError } from './wallet-errors.js';
import { classifyDatabaseError, isTransientDatabaseError } from '../db/pg-errors.js';
import { retryConflicts } from '../db/retry.js';

/** What {@link applyUnderUserLock} needs. */
export interface LockedApplyContext {
  readonly db: Queryable;
  readonly locks: UserLocks;
  readonly logger: Logger;
  readonly metrics?: WindfallMetrics | undefined;
}

/** Options of one user's settlement. */
export interface LockedApplyOptions {
  readonly policy: LockPolicy;
  /** Recorded on every ledger entry; also decides `already_applied` versus `duplicate`. */
  readonly batchId: string | null;
  readonly signal?: AbortSignal | undefined;
  readonly deadline?: number | undefined;
  /**
   * Waits before re-running the statement after a transient database error (dropped connection, restart,
   * deadlock), while still holding the lock. Re-running is safe: the statement is idempotent.
   * Default [100, 500, 2000] ms: four tries in all.
   */
  readonly statementRetryDelaysMs?: readonly number[];
}

const DEFAULT_STATEMENT_RETRY_DELAYS_MS = [100, 500, 2000];

/** Options of {@link applyUserStatement}. */
export interface StatementOptions {
  /** Recorded on every ledger entry; also decides `already_applied` versus `duplicate`. */
  readonly batchId: string | null;
  readonly signal?: AbortSignal | undefined;
  /** See {@link LockedApplyOptions.statementRetryDelaysMs}. */
  readonly statementRetryDelaysMs?: readonly number[];
}

/**
 * Runs a user's ledger statement (the caller holds the user's lock), running it again after transient database
 * errors (it is idempotent). Errors: {@link InsufficientFundsError}; {@link InvalidOperationError} for a balance
 * overflow; other PostgreSQL errors as is. Observes `windfall_user_tx_seconds`.
 */
export async function applyUserStatement(
  context: Pick<LockedApplyContext, 'db' | 'logger' | 'metrics'>,
  uid: string,
  operations: readonly LedgerOperation[],
  options: StatementOptions,
): Promise<UserApplyResult> {
  const started = performance.now();
  try {
    return await retryConflicts(() => applyUserOperations(context.db, uid, operations, options.batchId), {
      delaysMs: options.statementRetryDelaysMs ?? DEFAULT_STATEMENT_RETRY_DELAYS_MS,
      signal: options.signal,
      retryable: isTransientDatabaseError,
      onRetry: (error, retry) =>
        context.logger.warn(
          { err: error, uid, batchId: options.batchId, retry },
          'transient database error; running the user statement again',
        ),
    });
  } catch (error) {
    const kind = classifyDatabaseError(error);
    if (kind === 'insufficient_funds') throw new InsufficientFundsError(uid, { cause: error });
    if (kind === 'invalid') {
      throw new InvalidOperationError(
        `the operations of user ${JSON.stringify(uid)} cannot be applied: ${(error as Error).message}`,
        { cause: error },
      );
    }
    throw error;
  } finally {
    context.metrics?.userTransaction.observe((performance.now() - started) / 1000);
  }
}

/**
 * Applies one user's operations under that user's lock: take the lock (waiting under the policy), run the single
 * ledger statement, release the lock with our token. Errors: lock errors as thrown by {@link UserLocks.acquire};
 * {@link InsufficientFundsError}; {@link InvalidOperationError} for a balance overflow; PostgreSQL errors as is.
 * A failed release is logged, never thrown: the statement has committed by then, and the lock expires by itself.
 */
export async function applyUnderUserLock(
  context: LockedApplyContext,
  uid: string,
  operations: readonly LedgerOperation[],
  options: LockedApplyOptions,
): Promise<UserApplyResult> {
  const handle = await context.locks.acquire(uid, options.policy, {
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.deadline !== undefined ? { deadline: options.deadline } : {}),
  });
  try {
    return await applyUserStatement(context, uid, operations, {
      batchId: options.batchId,
      signal: options.signal,
      ...(options.statementRetryDelaysMs ? { statementRetryDelaysMs: options.statementRetryDelaysMs } : {}),
    });
  } finally {
    try {
      await context.locks.release(handle);
    } catch (error) {
      context.logger.warn({ err: error, uid }, 'could not release the user lock; it will expire by its TTL');
    }
  }
}
