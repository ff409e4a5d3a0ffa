import { abortableSleep } from '../concurrency/abortable-sleep.js';
import { classifyDatabaseError } from './pg-errors.js';

/** Options of {@link retryConflicts}. */
export interface RetryOptions {
  /**
   * Waits before each further try, ms (each with ±50 % jitter, so that two clashing transactions do not clash
   * again in step). Default {@link CLASH_RETRY_DELAYS_MS}.
   */
  readonly delaysMs?: readonly number[];
  /** Ends the waits early; the last error is thrown. */
  readonly signal?: AbortSignal | undefined;
  /** Called before each further try. */
  readonly onRetry?: (error: unknown, retry: number) => void;
  /**
   * Which errors are worth another try. Default: deadlocks, serialization failures and other clashes with concurrent
   * work, and errors without a SQLSTATE (`classifyDatabaseError` = `retry`).
   */
  readonly retryable?: (error: unknown) => boolean;
}

/** Waits before running a step again after a clash with concurrent work, ms (each jittered): four tries in all. */
const CLASH_RETRY_DELAYS_MS: readonly number[] = [50, 200, 800];

/** A wait of about `ms` (between half and one and a half times it). */
function withJitter(ms: number): number {
  return Math.round(ms * (0.5 + Math.random()));
}

/**
 * After clash number `clashes` (0 for the first), waits the jittered delay before the next try and answers true;
 * answers false at once when `delays` (default {@link CLASH_RETRY_DELAYS_MS}) are used up. An abort ends the wait.
 */
export async function waitAfterClash(
  clashes: number,
  signal?: AbortSignal,
  delays: readonly number[] = CLASH_RETRY_DELAYS_MS,
): Promise<boolean> {
  const delay = delays[clashes];
  if (delay === undefined) return false;
  await abortableSleep(withJitter(delay), signal).catch(() => undefined);
  return true;
}

/**
 * Runs an idempotent database step, trying it again after errors that may pass on their own (see
 * {@link RetryOptions.retryable}), with jittered waits. Other errors, and the last one, are thrown.
 */
export async function retryConflicts<T>(step: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const delays = options.delaysMs ?? CLASH_RETRY_DELAYS_MS;
  const retryable = options.retryable ?? ((error: unknown) => classifyDatabaseError(error) === 'retry');
  for (let retry = 0; ; retry += 1) {
    try {
      return await step();
    } catch (error) {
      if (retry >= delays.length || !retryable(error) || options.signal?.aborted) throw error;
      options.onRetry?.(error, retry + 1);
      await waitAfterClash(retry, options.signal, delays);
      if (options.signal?.aborted) throw error;
    }
  }
}
