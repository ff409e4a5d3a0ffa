import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis, Cluster } from 'ioredis';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import { abortableSleep } from './abortable-sleep.js';
import { LockBusyError, LockTimeoutError } from './lock-errors.js';
import type { LockPolicy } from './lock-policy.js';
import { retryDelays } from './lock-policy.js';

/** Deletes the key only when it still holds our value (our token): a late release never frees someone else's lock. */
const RELEASE_SCRIPT = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
/** Sets a new TTL only when the key still holds our value. */
const EXTEND_SCRIPT = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
/** Value and remaining TTL read atomically. */
const STATUS_SCRIPT = `return {redis.call('get', KEYS[1]), redis.call('pttl', KEYS[1])}`;

type RedisClient = Redis | Cluster;

interface LockScripts {
  windfallReleaseLock(key: string, value: string): Promise<number>;
  windfallExtendLock(key: string, value: string, ttlMs: number): Promise<number>;
  windfallLockStatus(key: string): Promise<[string | null, number]>;
}

/** What a lock's value says about its holder. Windfall writes JSON; a foreign value is reported as the owner. */
export interface LockValue {
  readonly owner: string;
  readonly acquiredAt: string | null;
  readonly token: string | null;
}

/** A lock this process holds. Release it with {@link UserLocks.release}. */
export interface LockHandle {
  readonly uid: string;
  readonly key: string;
  /** The exact value written; only this value releases or extends the lock. */
  readonly value: string;
  readonly policy: LockPolicy;
  /** `performance.now()` when the lock was taken, for hold-time metrics. */
  readonly acquiredAtMonotonic: number;
  /** Retries that were needed (0 = first attempt). */
  readonly retries: number;
}

/** The answer of `windfall lock status`. */
export interface LockStatus {
  readonly uid: string;
  readonly locked: boolean;
  /** Milliseconds until the lock expires; null when not locked or when it has no expiry. */
  readonly ttlMs: number | null;
  readonly owner: string | null;
  readonly acquiredAt: string | null;
}

/** Options of one acquisition. */
export interface AcquireOptions {
  /** Ends the wait early with {@link LockTimeoutError}. */
  readonly signal?: AbortSignal;
  /** Epoch milliseconds after which waiting ends with {@link LockTimeoutError}. */
  readonly deadline?: number;
}

/** Construction options of {@link UserLocks}. */
export interface UserLocksOptions {
  /** Key prefix; the lock of user U is `<prefix>:lock:<U>`. Default `windfall`. */
  readonly prefix?: string;
  /** Names this process in lock values. Default `<hostname>:<pid>`. */
  readonly owner?: string;
  /** Default: a silent logger. */
  readonly logger?: Logger;
  /** Default: none (nothing is measured). */
  readonly metrics?: WindfallMetrics;
}

/**
 * Per-user Redis locks with the seed design's wait-and-retry: `SET key value NX PX ttl`, retried with
 * exponential backoff under a {@link LockPolicy}. The lock is an efficiency lock — PostgreSQL keeps money right
 * on its own — so a lost lock costs throughput, never a double credit.
 */
export class UserLocks {
  readonly prefix: string;
  readonly owner: string;
  private readonly logger: Logger;
  private readonly metrics: WindfallMetrics | undefined;
  private readonly redis: RedisClient & LockScripts;

  constructor(redis: RedisClient, options: UserLocksOptions = {}) {
    this.prefix = options.prefix ?? 'windfall';
    this.owner = options.owner ?? `${hostname()}:${process.pid}`;
    this.logger = options.logger ?? silentLogger();
    this.metrics = options.metrics;
    if (!('windfallReleaseLock' in redis)) {
      redis.defineCommand('windfallReleaseLock', { numberOfKeys: 1, lua: RELEASE_SCRIPT });
      redis.defineCommand('windfallExtendLock', { numberOfKeys: 1, lua: EXTEND_SCRIPT });
      redis.defineCommand('windfallLockStatus', { numberOfKeys: 1, lua: STATUS_SCRIPT });
    }
    this.redis = redis as RedisClient & LockScripts;
  }

  /** The Redis key of a user's lock. */
  keyOf(uid: string): string {
    return `${this.prefix}:lock:${uid}`;
  }

  /**
   * Takes the lock of `uid`, waiting under `policy` while someone else holds it.
   * @throws {@link LockBusyError} when every retry found the lock held.
   * @throws {@link LockTimeoutError} when `signal` aborts or `deadline` passes first.
   * @throws the Redis error when Redis cannot be reached (transient).
   */
  async acquire(uid: string, policy: LockPolicy, options: AcquireOptions = {}): Promise<LockHandle> {
    const key = this.keyOf(uid);
    const value = JSON.stringify({ owner: this.owner, acquiredAt: new Date().toISOString(), token: randomUUID() });
    const delays = retryDelays(policy);
    const started = performance.now();
    const waited = (): number => Math.round(performance.now() - started);
    const finish = (outcome: 'acquired' | 'busy' | 'timeout' | 'error', retries: number): void => {
      this.metrics?.lockAcquire.inc({ policy: policy.name, outcome });
      this.metrics?.lockRetries.observe({ policy: policy.name }, retries);
      this.metrics?.lockWait.observe({ policy: policy.name }, (performance.now() - started) / 1000);
    };

    for (let attempt = 0; ; attempt += 1) {
      if (options.signal?.aborted || (options.deadline !== undefined && Date.now() >= options.deadline)) {
        finish('timeout', attempt);
        throw new LockTimeoutError(uid, policy.name, waited(), { cause: options.signal?.reason });
      }
      let taken: string | null;
      try {
        taken = await this.redis.set(key, value, 'PX', policy.ttlMs, 'NX');
        // A SET whose reply was lost to a dropped connection is sent again by ioredis after the reconnect: it then
        // finds the key our own first SET wrote. That lock is ours (our unique value), not someone else's.
        if (taken !== 'OK' && (await this.redis.get(key)) === value) taken = 'OK';
      } catch (error) {
        finish('error', attempt);
        throw error;
      }
      if (taken === 'OK') {
        finish('acquired', attempt);
        return { uid, key, value, policy, acquiredAtMonotonic: performance.now(), retries: attempt };
      }
      const delay = delays[attempt];
      if (delay === undefined) {
        finish('busy', attempt);
        const holder = await this.status(uid).then(
          (status) => status.owner,
          () => null,
        );
        throw new LockBusyError(uid, policy.name, attempt + 1, waited(), holder);
      }
      const sleepMs = options.deadline === undefined ? delay : Math.min(delay, Math.max(0, options.deadline - Date.now()));
      try {
        await abortableSleep(sleepMs, options.signal);
      } catch (reason) {
        finish('timeout', attempt);
        throw new LockTimeoutError(uid, policy.name, waited(), { cause: reason });
      }
      if (options.deadline !== undefined && sleepMs < delay) {
        finish('timeout', attempt);
        throw new LockTimeoutError(uid, policy.name, waited());
      }
    }
  }

  /**
   * Releases a lock if it is still ours (atomic compare-and-delete). Returns false when it had expired or been
   * force-released and perhaps taken by someone else, whose lock is left alone.
   */
  async release(handle: LockHandle): Promise<boolean> {
    this.metrics?.lockHold.observe({ policy: handle.policy.name }, (performance.now() - handle.acquiredAtMonotonic) / 1000);
    const released = (await this.redis.windfallReleaseLock(handle.key, handle.value)) === 1;
    if (!released) {
      this.logger.warn({ uid: handle.uid }, 'lock was no longer ours at release: it expired or was force-released while held');
    }
    return released;
  }

  /** Sets a new TTL on a lock if it is still ours; false when it is not. */
  async extend(handle: LockHandle, ttlMs: number): Promise<boolean> {
    return (await this.redis.windfallExtendLock(handle.key, handle.value, ttlMs)) === 1;
  }

  /** Whether `uid` is locked, by whom, since when and for how much longer. */
  async status(uid: string): Promise<LockStatus> {
    const [value, pttl] = await this.redis.windfallLockStatus(this.keyOf(uid));
    if (value === null) return { uid, locked: false, ttlMs: null, owner: null, acquiredAt: null };
    const parsed = parseLockValue(value);
    return { uid, locked: true, ttlMs: pttl >= 0 ? pttl : null, owner: parsed.owner, acquiredAt: parsed.acquiredAt };
  }

  /**
   * Deletes the lock of `uid` whoever holds it, for emergencies (a holder that hangs). Logs a warning naming the
   * previous holder. Money stays right (PostgreSQL is the fence); the previous holder's release becomes a no-op.
   * Returns the status the lock had.
   */
  async forceRelease(uid: string, requestedBy = 'operator'): Promise<LockStatus> {
    const before = await this.status(uid);
    await this.redis.del(this.keyOf(uid));
    this.logger.warn(
      { uid, previousOwner: before.owner, acquiredAt: before.acquiredAt, ttlMs: before.ttlMs, requestedBy },
      before.locked ? 'lock force-released' : 'force release asked for a lock that was not held',
    );
    return before;
  }
}

/** Reads a lock value written by Windfall; any other value is someone else's lock, reported as its owner. */
export function parseLockValue(value: string): LockValue {
  try {
    const parsed: unknown = JSON.parse(value);
    if (parsed && typeof parsed === 'object' && 'owner' in parsed && typeof parsed.owner === 'string') {
      const record = parsed as { owner: string; acquiredAt?: unknown; token?: unknown };
      return {
        owner: record.owner,
        acquiredAt: typeof record.acquiredAt === 'string' ? record.acquiredAt : null,
        token: typeof record.token === 'string' ? record.token : null,
      };
    }
  } catch {
    // not ours: fall through
  }
  return { owner: value, acquiredAt: null, token: null };
}
