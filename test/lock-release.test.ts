import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { LockPolicy } from '../src/lock/lock-policy.js';
import { UserLocks } from '../src/lock/user-locks.js';
import { silentLogger } from '../src/log/logger.js';
import { isRedisUnavailable } from '../src/services/redis-errors.js';
import { ServiceGate } from '../src/services/service-gate.js';
import { LockRelease } from '../src/settlement/lock-release.js';
import { LockRounds } from '../src/settlement/lock-rounds.js';
import { countingRedis } from './support/counting-redis.js';
import { useTestEnvironment } from './support/environment.js';
import { SETTLED, trackedUser, type TrackedUser } from './support/settling-users.js';

const env = useTestEnvironment();
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close();
});

const POLICY: LockPolicy = { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 30_000 };
const key = (uid: string): string => `${env.prefix}:lock:${uid}`;

function redisGate(redis: Redis): ServiceGate {
  const gate = new ServiceGate({
    service: 'Redis',
    probe: () => redis.set(`${env.prefix}:probe`, '1', 'PX', 10_000),
    isFault: isRedisUnavailable,
    logger: silentLogger(),
  });
  cleanup.push(() => gate.end());
  return gate;
}

/** Lock manager on a connection of its own that counts its round trips; its scripts are loaded into Redis first. */
async function countedLocks() {
  const { redis, counts } = await countingRedis(env.redisUrl, env.prefix);
  cleanup.push(() => redis.disconnect());
  const locks = new UserLocks(redis, { prefix: env.prefix });
  const warm = await finishedUsers(locks, 'warm', 2);
  await locks.releaseMany(warm.map((user) => user.handle!));
  await locks.exchange(
    (await finishedUsers(locks, 'warm-x', 1)).map((user) => user.handle!),
    ['warm-y'],
    POLICY,
  );
  counts.reset();
  const release = new LockRelease({ locks, redisGate: redisGate(redis), logger: silentLogger() });
  return { redis, counts, locks, release };
}

/** `count` users whose transactions are done: each holds its lock (taken now) and knows its outcome. */
async function finishedUsers(locks: UserLocks, name: string, count: number): Promise<TrackedUser[]> {
  const uids = Array.from({ length: count }, (_, n) => `${name}-${n}`);
  const taken = await locks.tryAcquireMany(uids, POLICY);
  return taken.map((handle, i) => {
    if ('busy' in handle) throw new Error(`${uids[i]}'s lock is busy`);
    return trackedUser(uids[i]!, { handle, outcome: SETTLED });
  });
}

const existing = async (users: readonly TrackedUser[]): Promise<number> =>
  users.length === 0 ? 0 : env.redis.exists(...users.map((user) => key(user.task.uid)));

describe('lock release', () => {
  it("gives back many finished users' locks in one round trip, then delivers their outcomes", async () => {
    const { counts, locks, release } = await countedLocks();
    const users = await finishedUsers(locks, 'rm', 10);
    // rm-9's lock expired and was taken by someone else meanwhile: it stays theirs
    await env.redis.set(key('rm-9'), 'new-holder', 'PX', 10_000);
    counts.reset();
    for (const user of users) release.release(user);
    expect(release.pending).toBe(10);
    expect(counts.roundTrips).toBe(0); // they wait for others (5 ms) or for a lock round
    await Promise.all(users.map((user) => user.settled));
    expect(counts.roundTrips).toBe(1);
    expect(counts.lockKeysByRoundTrip[0]).toEqual(users.map((user) => key(user.task.uid)));
    expect(users.every((user) => user.delivered.length === 1 && user.delivered[0] === SETTLED)).toBe(true);
    expect(await existing(users.slice(0, 9))).toBe(0);
    expect(await env.redis.get(key('rm-9'))).toBe('new-holder');
  });

  it('sends the releases at once when half a round (256) are queued', async () => {
    const { counts, locks, release } = await countedLocks();
    const users = await finishedUsers(locks, 'rt', 256);
    counts.reset();
    for (const user of users.slice(0, 255)) release.release(user);
    expect(counts.roundTrips).toBe(0);
    release.release(users[255]!);
    // sent now, in the same turn of the event loop: no timer was waited for
    expect(counts.roundTrips).toBe(1);
    expect(counts.lockKeysByRoundTrip[0]).toHaveLength(256);
    expect(release.pending).toBe(0);
    await Promise.all(users.map((user) => user.settled));
    expect(counts.roundTrips).toBe(1);
    expect(await existing(users)).toBe(0);
  });

  it('hands the queued releases to the next lock round instead, which gives them back in its round trip', async () => {
    const { redis, counts, locks, release } = await countedLocks();
    const finished = await finishedUsers(locks, 'rp', 3);
    counts.reset();
    for (const user of finished) release.release(user);
    const rounds = new LockRounds({
      locks,
      policy: POLICY,
      redisGate: redisGate(redis),
      signal: new AbortController().signal,
      onLocked: () => undefined,
      onRequeue: () => undefined,
      onRoundEnd: () => undefined,
    });
    const next = [trackedUser('rp-next-0'), trackedUser('rp-next-1')];
    const taken = release.take();
    expect(taken).toEqual(finished);
    expect(release.pending).toBe(0); // nothing left for the timer to send
    rounds.round(next, taken);
    await Promise.all(finished.map((user) => user.settled));
    expect(counts.roundTrips).toBe(1);
    expect(counts.lockKeysByRoundTrip[0]).toEqual([...finished, ...next].map((user) => key(user.task.uid)));
    expect(await existing(finished)).toBe(0);
    expect(await existing(next)).toBe(2);
  });

  it('delivers outcomes only once the locks are released, and close() waits for releases on their way', async () => {
    const { redis, counts, locks, release } = await countedLocks();
    const users = await finishedUsers(locks, 'rc', 2);
    counts.reset();
    // the lock connection is busy with a blocking pop: the releases sent after it wait in Redis until it returns
    const blocker = `${env.prefix}:blocker`;
    const blocked = redis.blpop(blocker, 0).catch(() => null); // (rejected when a failed test disconnects)
    for (const user of users) release.release(user);
    let closed = false;
    const closing = release.close().then(() => (closed = true));
    expect(counts.lockKeysByRoundTrip.filter((keys) => keys.length > 0)).toHaveLength(1); // sent by close()
    expect(await existing(users)).toBe(2); // not released yet
    expect(users.map((user) => user.delivered)).toEqual([[], []]);
    expect(closed).toBe(false);
    await env.redis.lpush(blocker, 'go');
    await blocked;
    await closing;
    expect(await existing(users)).toBe(0);
    expect(users.map((user) => user.delivered)).toEqual([[SETTLED], [SETTLED]]);
  });

  it('delivers at once for a user without a lock; a release Redis cannot do pauses the Redis gate and still delivers', async () => {
    const redis = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
    const locks = new UserLocks(redis, { prefix: env.prefix });
    const users = await finishedUsers(locks, 'ru', 2);
    await redis.quit(); // the connection is gone
    const gate = redisGate(redis);
    const release = new LockRelease({ locks, redisGate: gate, logger: silentLogger() });
    const unlocked = trackedUser('ru-unlocked', { outcome: SETTLED });
    release.release(unlocked);
    expect(unlocked.delivered).toEqual([SETTLED]);
    for (const user of users) release.release(user);
    await release.close();
    expect(users.map((user) => user.delivered)).toEqual([[SETTLED], [SETTLED]]);
    expect(gate.isOpen).toBe(false);
    expect(await existing(users)).toBe(2); // left to expire by their TTL
  });
});
