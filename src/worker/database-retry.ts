import { classifyDatabaseError } from '../db/pg-errors.js';
import { abortableSleep } from '../lock/abortable-sleep.js';
import type { Logger } from '../log/logger.js';

/** Waits between tries of a job-level database step (load, record, complete): about 30 s in all. */
const DELAYS_MS = [200, 1000, 3000, 8000, 15_000];

/**
 * Runs an idempotent database step, trying again after transient errors (a terminated backend, a restart) so that
 * a database blip does not burn a job attempt. Rethrows the last error, or at once for permanent errors.
 */
export async function withDatabaseRetry<T>(logger: Logger, signal: AbortSignal, step: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await step();
    } catch (error) {
      const delay = DELAYS_MS[attempt];
      if (delay === undefined || classifyDatabaseError(error) !== 'transient') throw error;
      logger.warn({ err: error, attempt: attempt + 1 }, 'transient database error; trying the step again');
      await abortableSleep(delay, signal).catch(() => undefined);
    }
  }
}
