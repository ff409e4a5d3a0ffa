import { abortableSleep } from '../concurrency/abortable-sleep.js';
import { classifyDatabaseError } from './pg-errors.js';

/** Options of {@link retryConflicts}. */
export interface RetryOptions {
  /**
   * Waits before each further try, ms (each with ±50 % jitter, so that two clashing transactions do not clash
   * again in step). Default [50, 200, 800]: four tries in all.
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
export const CLASH_RETRY_DELAYS_MS: readonly number[] = [50, 200, 800];

/** A wait of about `ms` (between half and one and a half times it). */
export function withJitter(ms: number): number {
  return Math.round(ms * (0.5 + Math.random()));
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
      const delay = delays[retry];
      if (delay === undefined || !retryable(error) || options.signal?.aborted) throw error;
      options.onRetry?.(error, retry + 1);
      await abortableSleep(withJitter(delay), options.signal).catch(() => undefined);
      if (options.signal?.aborted) throw error;
    }
  }
}
