import { WindfallError } from '../errors/windfall-error.js';

/** A withdrawal (or a user's batch of operations) would take the balance below zero; nothing was applied. */
export class InsufficientFundsError extends WindfallError {
  static override readonly code = 'INSUFFICIENT_FUNDS';
  override readonly name = 'InsufficientFundsError';
  constructor(
    readonly uid: string,
    options?: { cause?: unknown },
  ) {
    super(
      `insufficient funds: the operations of user ${JSON.stringify(uid)} would take the balance below zero; nothing was applied`,
      options,
    );
  }
}

/** An operation id was already used with a different user or amount: refused, never credited twice. */
export class OperationConflictError extends WindfallError {
  static override readonly code = 'CONFLICT';
  override readonly name = 'OperationConflictError';
  constructor(
    readonly operationId: string,
    readonly detail: string,
  ) {
    super(
      `operation ${JSON.stringify(operationId)} conflicts with the ledger: ${detail}; use a new operation id for a different payment`,
    );
  }
}

/** An operation that can never be applied as given (bad amount, bad id, balance overflow). */
export class InvalidOperationError extends WindfallError {
  static override readonly code = 'INVALID';
  override readonly name = 'InvalidOperationError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
