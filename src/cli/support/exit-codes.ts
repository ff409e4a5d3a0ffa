import { WindfallError } from '../../errors/windfall-error.js';

/** Exit codes of the `windfall` command (contract). */
export const EXIT = {
  /** Success. */
  OK: 0,
  /** The operation failed, or a check found problems. */
  FAILED: 1,
  /** Bad usage or invalid input. */
  USAGE: 2,
} as const;

/** An error the CLI reports as bad usage or invalid input (exit 2). */
export class UsageError extends WindfallError {
  static override readonly code = 'BAD_USAGE';
  override readonly name = 'UsageError';
}

/** A failure the CLI reports with exit 1, its message already written for people. */
export class CommandFailedError extends WindfallError {
  static override readonly code = 'COMMAND_FAILED';
  override readonly name = 'CommandFailedError';
}
