import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis, Cluster } from 'ioredis';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import { abortableSleep } from '../concurrency/abortable-sleep.js';
import { LockBusyError, LockTimeoutError } from './lock-errors.js';
import type { LockPolicy } from './lock-policy.js';
import { retryDelays } from './lock-policy.js';

/*
 * The scripts read a key with `redis.pcall('get', …)`: a key of another type (a hash another system locks with) then
 * compares unequal — it is someone else's lock, held — instead of failing the whole script with WRONGTYPE.
 */

/** Deletes the key only when it still holds our value (our token): a late release never frees someone else's lock. */
const RELEASE_SCRIPT = `if redis.pcall('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
/** Sets a new TTL only when the key still holds our value. */
const EXTEND_SCRIPT = `if redis.pcall('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;
/**
 * `SET KEYS[i] ARGV[i + 1] PX ARGV[1] NX` for every key in one round trip (each lock taken on its own, exactly as a
 * single SET NX PX would): 1 for each lock taken, 0 for each found held. A key already holding our own value counts
 * as taken: the script was sent again by ioredis after its reply was lost to a dropped connection.
 */
const ACQUIRE_MANY_SCRIPT = `local taken = {}
for i = 1, #KEYS do
  if redis.call('set', KEYS[i], ARGV[i + 1], 'PX', ARGV[1], 'NX') or redis.pcall('get', KEYS[i]) == ARGV[i + 1] then
    taken[i] = 1
  else
    taken[i] = 0
  end
end
return taken`;
/**
 * {@link RELEASE_SCRIPT} for many keys in one round trip: KEYS[i] is deleted only when it still holds ARGV[i].
 * Returns 1 or 0 per key.
 */
const RELEASE_MANY_SCRIPT = `local released = {}
for i = 1, #KEYS do
  if redis.pcall('get', KEYS[i]) == ARGV[i] then released[i] = redis.call('del', KEYS[i]) else released[i] = 0 end
end
return released`;
/**
 * {@link RELEASE_MANY_SCRIPT} for the first ARGV[1] keys, then {@link ACQUIRE_MANY_SCRIPT} for the others, in one
 * round trip (releases first: a user finishing and the same user starting again in another job may both be in it).
 * ARGV[2] is the TTL; ARGV[i + 2] is the value of KEYS[i]. Returns 1 or 0 per key.
 */
const EXCHANGE_SCRIPT = `local releasing = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local value = ARGV[i + 2]
  if i <= releasing then
    if redis.pcall('get', KEYS[i]) == value then out[i] = redis.call('del', KEYS[i]) else out[i] = 0 end
  elseif redis.call('set', KEYS[i], value, 'PX', ARGV[2], 'NX') or redis.pcall('get', KEYS[i]) == value then
    out[i] = 1
  else
    out[i] = 0
  end
end
return out`;
/** Value and remaining TTL read atomically. */
const STATUS_SCRIPT = `local value = redis.pcall('get', KEYS[1])
if type(value) == 'table' then value = 'a ' .. redis.call('type', KEYS[1]).ok .. ' key Windfall did not write' end
return {value, redis.call('pttl', KEYS[1])}`;

type RedisClient = Redis | Cluster;

interface LockScripts {
  windfallReleaseLock(key: string, value: string): Promise<number>;
  windfallReleaseLocks(numberOfKeys: number, ...keysThenValues: string[]): Promise<number[]>;
  windfallAcquireLocks(numberOfKeys: number, ...keysThenTtlAndValues: (string | number)[]): Promise<number[]>;
  windfallExchangeLocks(numberOfKeys: number, ...keysThenCountTtlAndValues: (string | number)[]): Promise<number[]>;
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

/** A lock {@link UserLocks.tryAcquireMany} found held by someone else; {@link UserLocks.continueAcquire} waits for it. */
export interface BusyLock {
  readonly busy: true;
  readonly uid: string;
  /** The value this acquisition writes once the lock is free. */
  readonly value: string;
  readonly policy: LockPolicy;
  /** `performance.now()` of the first attempt: waits and metrics count from there. */
  readonly started: number;
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
  /** Key prefix; the lock of user U is `<prefix>:lock:<U>`. Default {@link DEFAULT_KEY_PREFIX} (`windfall`). */
  readonly prefix?: string;
  /** Names this process in lock values. Default `<hostname>:<pid>`. */
  readonly owner?: string;
  /** Default: a silent logger. */
  readonly logger?: Logger;
  /** Default: none (nothing is measured). */
  readonly metrics?: WindfallMetrics;
}

/** The Redis key prefix when none is given: `WINDFALL_PREFIX`'s default too (`config/settings.ts`). */
export const DEFAULT_KEY_PREFIX = 'windfall';

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
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX;
    this.owner = options.owner ?? `${hostname()}:${process.pid}`;
    this.logger = options.logger ?? silentLogger();
    this.metrics = options.metrics;
    if (!('windfallReleaseLocks' in redis)) {
      redis.defineCommand('windfallReleaseLocks', { lua: RELEASE_MANY_SCRIPT });
      redis.defineCommand('windfallAcquireLocks', { lua: ACQUIRE_MANY_SCRIPT });
    }
    if (!('windfallExchangeLocks' in redis)) redis.defineCommand('windfallExchangeLocks', { lua: EXCHANGE_SCRIPT });
    if (!('windfallReleaseLock' in redis)) {
      redis.defineCommand('windfallReleaseLock', { numberOfKeys: 1, lua: RELEASE_SCRIPT });
      redis.defineCommand('windfallExtendLock', { numberOfKeys: 1, lua: EXTEND_SCRIPT });
      redis.defineCommand('windfallLockStatus', { numberOfKeys: 1, lua: STATUS_SCRIPT });
    }
    this.redis = redis as RedisClient & LockScripts;
    this.ownerJson = JSON.stringify(this.owner);
    // Keys of different users live in different slots of a Redis Cluster: there, every lock command goes alone.
    this.batching = !(redis as { isCluster?: boolean }).isCluster;
  }

  private readonly ownerJson: string;
  private readonly batching: boolean;

  /** A fresh lock value: `{"owner":…,"acquiredAt":…,"token":…}` (the same text JSON.stringify writes). */
  private lockValue(acquiredAt: string): string {
    return `{"owner":${this.ownerJson},"acquiredAt":"${acquiredAt}","token":"${randomUUID()}"}`;
  }

  private record(
    policy: LockPolicy,
    outcome: 'acquired' | 'busy' | 'timeout' | 'error',
    retries: number,
    started: number,
  ): void {
    if (!this.metrics) return;
    this.metrics.lockAcquire.inc({ policy: policy.name, outcome });
    this.metrics.lockRetries.observe({ policy: policy.name }, retries);
    this.metrics.lockWait.observe({ policy: policy.name }, (performance.now() - started) / 1000);
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
    return this.attempt(uid, this.lockValue(new Date().toISOString()), policy, options, performance.now(), false);
  }

  /**
   * One attempt at each of `uids`' locks, in ONE round trip (one script doing `SET NX PX` for each key): a handle
   * for each lock taken, a {@link BusyLock} for each found held. Nobody waits here: continue a busy one under the
   * policy with {@link continueAcquire}. Throws the Redis error when Redis cannot be reached (then no lock was
   * taken: the script runs whole or not at all). On a Redis Cluster, one SET per lock.
   * @throws {@link LockTimeoutError} for all when `signal` has already aborted.
   */
  async tryAcquireMany(
    uids: readonly string[],
    policy: LockPolicy,
    options: AcquireOptions = {},
  ): Promise<(LockHandle | BusyLock)[]> {
    const started = performance.now();
    if (options.signal?.aborted || (options.deadline !== undefined && Date.now() >= options.deadline)) {
      for (let i = 0; i < uids.length; i += 1) this.record(policy, 'timeout', 0, started);
      throw new LockTimeoutError(uids[0] ?? '', policy.name, 0, { cause: options.signal?.reason });
    }
    const acquiredAt = new Date().toISOString();
    const values = uids.map(() => this.lockValue(acquiredAt));
    let replies: unknown[];
    try {
      replies =
        this.batching && uids.length > 1
          ? await this.redis.windfallAcquireLocks(
              uids.length,
              ...uids.map((uid) => this.keyOf(uid)),
              policy.ttlMs,
              ...values,
            )
          : await this.setEach(uids, values, policy.ttlMs);
    } catch (error) {
      for (let i = 0; i < uids.length; i += 1) this.record(policy, 'error', 0, started);
      throw error;
    }
    const now = performance.now();
    return uids.map((uid, i) => {
      if (replies[i] === 'OK' || replies[i] === 1) {
        this.record(policy, 'acquired', 0, started);
        return { uid, key: this.keyOf(uid), value: values[i]!, policy, acquiredAtMonotonic: now, retries: 0 };
      }
      return { busy: true, uid, value: values[i]!, policy, started };
    });
  }

  /**
   * One `SET NX PX` per key (Redis Cluster: the keys live on different nodes). When any of them fails, the locks the
   * others took are given back before the error is thrown, so that a retry does not find its own orphaned locks busy.
   */
  private async setEach(uids: readonly string[], values: readonly string[], ttlMs: number): Promise<unknown[]> {
    const outcomes = await Promise.allSettled(
      uids.map(async (uid, i) => {
        const taken = await this.redis.set(this.keyOf(uid), values[i]!, 'PX', ttlMs, 'NX');
        // see attempt(): a resent SET finds our own value
        return taken === 'OK' || (await this.redis.get(this.keyOf(uid)).catch(() => null)) === values[i] ? 'OK' : null;
      }),
    );
    const failed = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    if (!failed) return outcomes.map((outcome) => (outcome as PromiseFulfilledResult<unknown>).value);
    const taken = uids.flatMap((uid, i) => {
      const outcome = outcomes[i]!;
      return outcome.status === 'fulfilled' && outcome.value === 'OK'
        ? [{ key: this.keyOf(uid), value: values[i]! }]
        : [];
    });
    // best effort: what cannot be given back now expires by its TTL
    await Promise.allSettled(taken.map((lock) => this.redis.windfallReleaseLock(lock.key, lock.value)));
    throw failed.reason;
  }

  /**
   * Goes on waiting for a lock that {@link tryAcquireMany} found busy, under the rest of its policy (the first
   * attempt was that one): the same waits, errors and metrics as {@link acquire}.
   */
  continueAcquire(busy: BusyLock, options: AcquireOptions = {}): Promise<LockHandle> {
    return this.attempt(busy.uid, busy.value, busy.policy, options, busy.started, true);
  }

  private async attempt(
    uid: string,
    value: string,
    policy: LockPolicy,
    options: AcquireOptions,
    started: number,
    firstDone: boolean,
  ): Promise<LockHandle> {
    const key = this.keyOf(uid);
    const delays = retryDelays(policy);
    const waited = (): number => Math.round(performance.now() - started);

    for (let attempt = 0; ; attempt += 1) {
      let taken: string | null = null;
      if (!(firstDone && attempt === 0)) {
        if (options.signal?.aborted || (options.deadline !== undefined && Date.now() >= options.deadline)) {
          this.record(policy, 'timeout', attempt, started);
          throw new LockTimeoutError(uid, policy.name, waited(), { cause: options.signal?.reason });
        }
        try {
          taken = await this.redis.set(key, value, 'PX', policy.ttlMs, 'NX');
          // A SET whose reply was lost to a dropped connection is sent again by ioredis after the reconnect: it then
          // finds the key our own first SET wrote. That lock is ours (our unique value), not someone else's.
          // (a key of another type is someone else's lock: its GET fails with WRONGTYPE)
          if (taken !== 'OK' && (await this.redis.get(key).catch(() => null)) === value) taken = 'OK';
        } catch (error) {
          this.record(policy, 'error', attempt, started);
          throw error;
        }
        if (taken === 'OK') {
          this.record(policy, 'acquired', attempt, started);
          return { uid, key, value, policy, acquiredAtMonotonic: performance.now(), retries: attempt };
        }
      }
      const delay = delays[attempt];
      if (delay === undefined) {
        this.record(policy, 'busy', attempt, started);
        const holder = await this.status(uid).then(
          (status) => status.owner,
          () => null,
        );
        throw new LockBusyError(uid, policy.name, attempt + 1, waited(), holder);
      }
      const sleepMs =
        options.deadline === undefined ? delay : Math.min(delay, Math.max(0, options.deadline - Date.now()));
      try {
        await abortableSleep(sleepMs, options.signal);
      } catch (reason) {
        this.record(policy, 'timeout', attempt, started);
        throw new LockTimeoutError(uid, policy.name, waited(), { cause: reason });
      }
      if (options.deadline !== undefined && sleepMs < delay) {
        this.record(policy, 'timeout', attempt, started);
        throw new LockTimeoutError(uid, policy.name, waited());
      }
    }
  }

  /**
   * Releases a lock if it is still ours (atomic compare-and-delete). Returns false when it had expired or been
   * force-released and perhaps taken by someone else, whose lock is left alone.
   */
  async release(handle: LockHandle): Promise<boolean> {
    this.metrics?.lockHold.observe(
      { policy: handle.policy.name },
      (performance.now() - handle.acquiredAtMonotonic) / 1000,
    );
    const released = (await this.redis.windfallReleaseLock(handle.key, handle.value)) === 1;
    if (!released) {
      this.logger.warn(
        { uid: handle.uid },
        'lock was no longer ours at release: it expired or was force-released while held',
      );
    }
    return released;
  }

  /**
   * {@link releaseMany} and {@link tryAcquireMany} in ONE round trip (one script: the releases, then the attempts).
   * Returns whether each released lock was still ours, and a handle or a {@link BusyLock} per uid. When the round
   * trip fails, the error is thrown (the locks to release then expire by their TTL). On a Redis Cluster, it is
   * {@link releaseMany} then {@link tryAcquireMany}.
   */
  async exchange(
    releases: readonly LockHandle[],
    uids: readonly string[],
    policy: LockPolicy,
    options: AcquireOptions = {},
  ): Promise<{ released: boolean[]; acquired: (LockHandle | BusyLock)[] }> {
    if (releases.length === 0) return { released: [], acquired: await this.tryAcquireMany(uids, policy, options) };
    if (uids.length === 0) return { released: await this.releaseMany(releases), acquired: [] };
    if (
      !this.batching ||
      options.signal?.aborted ||
      (options.deadline !== undefined && Date.now() >= options.deadline)
    ) {
      const released = await this.releaseMany(releases);
      return { released, acquired: await this.tryAcquireMany(uids, policy, options) };
    }
    const started = performance.now();
    this.observeHolds(releases, started);
    const acquiredAt = new Date().toISOString();
    const values = uids.map(() => this.lockValue(acquiredAt));
    let replies: number[];
    try {
      replies = await this.redis.windfallExchangeLocks(
        releases.length + uids.length,
        ...releases.map((handle) => handle.key),
        ...uids.map((uid) => this.keyOf(uid)),
        releases.length,
        policy.ttlMs,
        ...releases.map((handle) => handle.value),
        ...values,
      );
    } catch (error) {
      for (let i = 0; i < uids.length; i += 1) this.record(policy, 'error', 0, started);
      throw error;
    }
    const released = releases.map((handle, i) => this.releasedNow(handle, replies[i] === 1));
    const now = performance.now();
    const acquired = uids.map((uid, i): LockHandle | BusyLock => {
      const value = values[i]!;
      if (replies[releases.length + i] === 1) {
        this.record(policy, 'acquired', 0, started);
        return { uid, key: this.keyOf(uid), value, policy, acquiredAtMonotonic: now, retries: 0 };
      }
      return { busy: true, uid, value, policy, started };
    });
    return { released, acquired };
  }

  private observeHolds(handles: readonly LockHandle[], now: number): void {
    if (this.metrics)
      for (const handle of handles)
        this.metrics.lockHold.observe({ policy: handle.policy.name }, (now - handle.acquiredAtMonotonic) / 1000);
  }

  private releasedNow(handle: LockHandle, released: boolean): boolean {
    if (!released)
      this.logger.warn(
        { uid: handle.uid },
        'lock was no longer ours at release: it expired or was force-released while held',
      );
    return released;
  }

  /**
   * Releases many locks in ONE round trip (one script; every key compared with its own value, as in
   * {@link release}). Returns, per handle, whether it was still ours. On a Redis Cluster, one release per lock.
   */
  async releaseMany(handles: readonly LockHandle[]): Promise<boolean[]> {
    if (handles.length === 0) return [];
    if (handles.length === 1 || !this.batching) return Promise.all(handles.map((handle) => this.release(handle)));
    this.observeHolds(handles, performance.now());
    const replies = await this.releaseKeys(handles);
    return handles.map((handle, i) => this.releasedNow(handle, replies[i] === 1));
  }

  private releaseKeys(locks: readonly { key: string; value: string }[]): Promise<number[]> {
    return this.redis.windfallReleaseLocks(
      locks.length,
      ...locks.map((lock) => lock.key),
      ...locks.map((lock) => lock.value),
    );
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
