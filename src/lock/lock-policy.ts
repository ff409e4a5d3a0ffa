/**
 * How long to wait for a busy per-user lock: `retries` more attempts after the first, the first retry after
 * `initialDelayMs`, each later one `factor` times longer; the lock expires `ttlMs` after it is taken.
 */
export interface LockPolicy {
  /** Name used in logs and in the `policy` metric label. */
  readonly name: string;
  /** Attempts after the first one; 0 fails at once when the lock is busy (the old "system busy" behaviour). */
  readonly retries: number;
  /** Wait before the first retry, in milliseconds. */
  readonly initialDelayMs: number;
  /** Multiplier applied to the wait after each retry (≥ 1). */
  readonly factor: number;
  /** Time to live of the lock, in milliseconds: it expires on its own if the holder dies. */
  readonly ttlMs: number;
}

/** Single wallet operations: 3 retries from 100 ms × 1.5 (total wait 0.475 s), lock TTL 30 s. */
export const DEFAULT_POLICY: LockPolicy = Object.freeze({
  name: 'default',
  retries: 3,
  initialDelayMs: 100,
  factor: 1.5,
  ttlMs: 30_000,
});

/** Mixed batch operations: 5 retries from 200 ms × 1.5 (total wait 2.64 s), lock TTL 60 s. */
export const BATCH_POLICY: LockPolicy = Object.freeze({
  name: 'batch',
  retries: 5,
  initialDelayMs: 200,
  factor: 1.5,
  ttlMs: 60_000,
});

/** Batch rewards (the worker): 10 retries from 500 ms × 1.5 (total wait 56.7 s), lock TTL 60 s. */
export const REWARD_POLICY: LockPolicy = Object.freeze({
  name: 'reward',
  retries: 10,
  initialDelayMs: 500,
  factor: 1.5,
  ttlMs: 60_000,
});

/** The waits between attempts, in milliseconds: `initialDelayMs × factor^k` for k = 0 … retries − 1. */
export function retryDelays(policy: LockPolicy): number[] {
  const delays: number[] = [];
  let delay = policy.initialDelayMs;
  for (let retry = 0; retry < policy.retries; retry += 1) {
    delays.push(Math.round(delay));
    delay *= policy.factor;
  }
  return delays;
}

/** The longest a caller waits before the busy error: the sum of {@link retryDelays}. */
export function totalWaitMs(policy: LockPolicy): number {
  return retryDelays(policy).reduce((sum, delay) => sum + delay, 0);
}
