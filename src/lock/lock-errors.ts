import { WindfallError } from '../errors/windfall-error.js';

/**
 * The per-user lock stayed busy through every retry of the policy. Transient: the work may be retried later.
 * The message names the user, the policy and how long was waited.
 */
export class LockBusyError extends WindfallError {
  static override readonly code = 'LOCK_BUSY';
  override readonly name = 'LockBusyError';
  constructor(
    readonly uid: string,
    readonly policy: string,
    readonly attempts: number,
    readonly waitedMs: number,
    readonly holder: string | null,
  ) {
    super(
      `lock of user ${JSON.stringify(uid)} is still held${holder ? ` by ${holder}` : ''} after ${attempts} attempts over ` +
        `${waitedMs} ms (policy ${policy}); retry later, or check it with \`windfall lock status ${uid}\``,
    );
  }
}

/**
 * The caller's AbortSignal fired or its deadline passed while waiting for a per-user lock.
 * Distinct from {@link LockBusyError}: the lock was not necessarily going to stay busy.
 */
export class LockTimeoutError extends WindfallError {
  static override readonly code = 'LOCK_TIMEOUT';
  override readonly name = 'LockTimeoutError';
  constructor(
    readonly uid: string,
    readonly policy: string,
    readonly waitedMs: number,
    options?: { cause?: unknown },
  ) {
    super(
      `gave up waiting for the lock of user ${JSON.stringify(uid)} after ${waitedMs} ms (policy ${policy}): the caller's deadline passed or it was cancelled`,
      options,
    );
  }
}
