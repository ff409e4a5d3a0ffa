import { describe, expect, it } from 'vitest';
import { LockBusyError, LockTimeoutError } from '../src/lock/lock-errors.js';
import {
  REWARD_POLICY,
  BATCH_POLICY,
  DEFAULT_POLICY,
  retryDelays,
  totalWaitMs,
  type LockPolicy,
} from '../src/lock/lock-policy.js';
import { UserLocks } from '../src/lock/user-locks.js';
import { WindfallMetrics } from '../src/metrics/metrics.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();
const fast: LockPolicy = { name: 'test', retries: 3, initialDelayMs: 40, factor: 1.5, ttlMs: 5000 };

describe('lock policies', () => {
  it('follow the seed: delay, delay × 1.5, … with the true totals docs/operations.md states', () => {
    expect(retryDelays(DEFAULT_POLICY)).toEqual([100, 150, 225]);
    expect(totalWaitMs(DEFAULT_POLICY)).toBe(475);
    expect(totalWaitMs(BATCH_POLICY)).toBe(2638);
    expect(retryDelays(REWARD_POLICY)).toHaveLength(10);
    expect(totalWaitMs(REWARD_POLICY)).toBe(56_665);
    expect([DEFAULT_POLICY.ttlMs, BATCH_POLICY.ttlMs, REWARD_POLICY.ttlMs]).toEqual([30_000, 60_000, 60_000]);
  });
});

describe('UserLocks', () => {
  const locks = (): UserLocks => new UserLocks(env.redis, { prefix: env.prefix, owner: 'test-owner' });

  it('takes a free lock at once, writes the contract key with holder and time, and releases it', async () => {
    const handle = await locks().acquire('alice', fast);
    expect(handle.key).toBe(`${env.prefix}:lock:alice`);
    expect(handle.retries).toBe(0);
    const value = JSON.parse((await env.redis.get(handle.key))!) as { owner: string; acquiredAt: string };
    expect(value.owner).toBe('test-owner');
    expect(Date.parse(value.acquiredAt)).toBeGreaterThan(Date.now() - 5000);
    const ttl = await env.redis.pttl(handle.key);
    expect(ttl).toBeGreaterThan(4000);
    expect(await locks().release(handle)).toBe(true);
    expect(await env.redis.exists(handle.key)).toBe(0);
  });

  it('waits with exponential backoff and fails with a busy error naming the holder when retries run out', async () => {
    await env.redis.set(`${env.prefix}:lock:bob`, 'legacy-service', 'PX', 10_000);
    const started = Date.now();
    const error = await locks()
      .acquire('bob', fast)
      .catch((e: unknown) => e);
    const waited = Date.now() - started;
    expect(error).toBeInstanceOf(LockBusyError);
    expect((error as LockBusyError).attempts).toBe(4);
    expect((error as LockBusyError).message).toContain('legacy-service');
    // 40 + 60 + 90 = 190 ms of waiting, plus round trips (and a busy machine's pauses: the bound only rules out
    // delays that grew wrongly, e.g. a factor applied twice or seconds for milliseconds)
    expect(waited).toBeGreaterThanOrEqual(185);
    expect(waited).toBeLessThan(3000);
    expect(await env.redis.get(`${env.prefix}:lock:bob`)).toBe('legacy-service');
  });

  it('gets the lock when the holder lets go during the wait', async () => {
    await env.redis.set(`${env.prefix}:lock:carol`, 'other', 'PX', 10_000);
    setTimeout(() => void env.redis.del(`${env.prefix}:lock:carol`), 120);
    const handle = await locks().acquire('carol', { ...fast, retries: 10 });
    expect(handle.retries).toBeGreaterThan(0);
    await locks().release(handle);
  });

  it('ends the wait with a timeout error, not a busy error, when the caller aborts', async () => {
    await env.redis.set(`${env.prefix}:lock:dave`, 'other', 'PX', 10_000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 60);
    const started = Date.now();
    // a first wait of 20 s: only an abort that interrupts the wait ends it within the bound below
    const error = await locks()
      .acquire('dave', { ...REWARD_POLICY, initialDelayMs: 20_000 }, { signal: controller.signal })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('ends the wait at the deadline with a timeout error', async () => {
    await env.redis.set(`${env.prefix}:lock:erin`, 'other', 'PX', 10_000);
    const started = Date.now();
    // waits of 500 ms then 10 s: only a wait cut at the deadline ends it within the bound below
    const error = await locks()
      .acquire('erin', { ...REWARD_POLICY, factor: 20 }, { deadline: Date.now() + 700 })
      .catch((e: unknown) => e);
    const waited = Date.now() - started;
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect(waited).toBeGreaterThanOrEqual(650);
    expect(waited).toBeLessThan(5000);
  });

  it("treats a key of another type (another system's hash lock) as held, without failing the other users' locks", async () => {
    const locks = new UserLocks(env.redis, { prefix: env.prefix });
    await env.redis.hset(`${env.prefix}:lock:hash-held`, 'owner', 'redisson');
    const outcomes = await locks.tryAcquireMany(['hash-free-1', 'hash-held', 'hash-free-2'], fast);
    expect(outcomes.map((outcome) => 'busy' in outcome)).toEqual([false, true, false]);
    // the same through the exchange script, and the single-key path waits for it like any busy lock
    const again = await locks.exchange(
      outcomes.filter((outcome): outcome is Exclude<typeof outcome, { busy: true }> => !('busy' in outcome)),
      ['hash-held'],
      fast,
    );
    expect(again.released).toEqual([true, true]);
    expect('busy' in again.acquired[0]!).toBe(true);
    await expect(locks.acquire('hash-held', fast)).rejects.toBeInstanceOf(LockBusyError);
    expect(await locks.status('hash-held')).toMatchObject({ locked: true, owner: 'a hash key Windfall did not write' });
    expect(await env.redis.hget(`${env.prefix}:lock:hash-held`, 'owner')).toBe('redisson');
  });

  it('never releases or extends a lock it does not hold', async () => {
    const mine = await locks().acquire('frank', fast);
    await env.redis.set(mine.key, 'someone-else', 'PX', 10_000); // our lock expired and was taken over
    expect(await locks().release(mine)).toBe(false);
    expect(await locks().extend(mine, 60_000)).toBe(false);
    expect(await env.redis.get(mine.key)).toBe('someone-else');
  });

  it('extends its own lock', async () => {
    const mine = await locks().acquire('gina', { ...fast, ttlMs: 1000 });
    expect(await locks().extend(mine, 30_000)).toBe(true);
    expect(await env.redis.pttl(mine.key)).toBeGreaterThan(20_000);
    await locks().release(mine);
  });

  it('reports status of free, own and foreign locks', async () => {
    expect(await locks().status('nobody')).toEqual({
      uid: 'nobody',
      locked: false,
      ttlMs: null,
      owner: null,
      acquiredAt: null,
    });
    const mine = await locks().acquire('hank', fast);
    const status = await locks().status('hank');
    expect(status).toMatchObject({ uid: 'hank', locked: true, owner: 'test-owner' });
    expect(status.ttlMs).toBeGreaterThan(4000);
    expect(Date.parse(status.acquiredAt!)).not.toBeNaN();
    await locks().release(mine);
    await env.redis.set(`${env.prefix}:lock:ivy`, 'raw-value', 'PX', 3000);
    expect(await locks().status('ivy')).toMatchObject({ locked: true, owner: 'raw-value', acquiredAt: null });
  });

  it('force-releases whoever holds the lock, and the old holder cannot release the new one', async () => {
    const first = await locks().acquire('jack', fast);
    const before = await locks().forceRelease('jack');
    expect(before.locked).toBe(true);
    expect(await env.redis.exists(first.key)).toBe(0);
    const second = await locks().acquire('jack', fast);
    expect(await locks().release(first)).toBe(false);
    expect(await env.redis.exists(second.key)).toBe(1);
    await locks().release(second);
  });

  it('counts acquisitions, retries, waits and holds in its metrics', async () => {
    const metrics = new WindfallMetrics();
    const measured = new UserLocks(env.redis, { prefix: env.prefix, metrics });
    const handle = await measured.acquire('kim', fast);
    await measured.release(handle);
    await env.redis.set(`${env.prefix}:lock:lee`, 'x', 'PX', 5000);
    await measured.acquire('lee', { ...fast, retries: 1 }).catch(() => undefined);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/windfall_lock_acquire_total\{policy="test",outcome="acquired"\} 1/);
    expect(text).toMatch(/windfall_lock_acquire_total\{policy="test",outcome="busy"\} 1/);
    expect(text).toMatch(/windfall_lock_retries_sum\{policy="test"\} 1/);
    expect(text).toMatch(/windfall_lock_hold_seconds_count\{policy="test"\} 1/);
    expect(text).toMatch(/windfall_lock_wait_seconds_count\{policy="test"\} 2/);
  });
});
