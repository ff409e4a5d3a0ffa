import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../src/db/pg-errors.js';
import { REWARD_POLICY, type LockPolicy } from '../src/lock/lock-policy.js';
import { UserLocks, type LockHandle } from '../src/lock/user-locks.js';
import { silentLogger } from '../src/log/logger.js';
import { isRedisUnavailable } from '../src/services/redis-errors.js';
import { ServiceGate } from '../src/services/service-gate.js';
import { LockRounds, locksToTake, MAX_LOCKS_PER_ROUND } from '../src/settlement/lock-rounds.js';
import { INTERRUPTED } from '../src/settlement/user-task.js';
import { countingRedis } from './support/counting-redis.js';
import { useTestEnvironment } from './support/environment.js';
import { SETTLED, trackedUser } from './support/settling-users.js';

const env = useTestEnvironment();
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close();
});

/** Fails at once when the lock is busy: no wait. */
const NO_WAIT: LockPolicy = { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 10_000 };
/** Waits up to 2 s for a busy lock, trying again every 20 ms. */
const LONG_WAIT: LockPolicy = { name: 'reward', retries: 100, initialDelayMs: 20, factor: 1, ttlMs: 10_000 };

const key = (uid: string): string => `${env.prefix}:lock:${uid}`;

function gate(service: 'Redis' | 'PostgreSQL', probe: () => Promise<unknown>): ServiceGate {
  const isFault = service === 'Redis' ? isRedisUnavailable : isDatabaseUnavailable;
  const created = new ServiceGate({ service, probe, isFault, logger: silentLogger() });
  cleanup.push(() => created.end());
  return created;
}

const redisGate = (redis: Redis = env.redis): ServiceGate =>
  gate('Redis', () => redis.set(`${env.prefix}:probe`, '1', 'PX', 10_000));

/** Locks taken now (none may be busy). */
async function held(locks: UserLocks, uids: string[]): Promise<LockHandle[]> {
  return (await locks.tryAcquireMany(uids, NO_WAIT)).map((outcome) => {
    if ('busy' in outcome) throw new Error(`${outcome.uid}'s lock is busy`);
    return outcome;
  });
}

/** {@link LockRounds} reporting what becomes of its users; `onRoundEnd` runs at each round's or wait's end. */
function lockRounds(
  locks: UserLocks,
  policy: LockPolicy,
  options: {
    signal?: AbortSignal;
    redisGate?: ServiceGate;
    postgresGate?: ServiceGate;
    onRoundEnd?: (ends: number) => void;
  } = {},
) {
  const report = { locked: [] as { uid: string; waited: boolean }[], requeued: [] as string[], roundEnds: 0 };
  const waiters: (() => void)[] = [];
  const rounds = new LockRounds({
    locks,
    policy,
    redisGate: options.redisGate ?? redisGate(),
    postgresGate: options.postgresGate,
    signal: options.signal ?? new AbortController().signal,
    onLocked: (user, waited) => report.locked.push({ uid: user.task.uid, waited }),
    onRequeue: (users) => report.requeued.push(...users.map((user) => user.task.uid)),
    onRoundEnd: () => {
      report.roundEnds += 1;
      options.onRoundEnd?.(report.roundEnds);
      for (const wake of waiters.splice(0)) wake();
    },
  });
  /** Resolves once `count` rounds or waits have ended. */
  const roundEnds = async (count: number): Promise<void> => {
    while (report.roundEnds < count) await new Promise<void>((wake) => waiters.push(wake));
  };
  return { rounds, report, roundEnds };
}

describe('how many locks the next round takes', () => {
  const rule = { transactions: 2, usersPerTransaction: 32 };
  it('keeps two transactions per slot locked ahead, in full rounds of at most 512', () => {
    expect(locksToTake({ ...rule, queued: 1000, locked: 0 })).toBe(128);
    expect(locksToTake({ ...rule, queued: 10, locked: 0 })).toBe(10);
    expect(locksToTake({ ...rule, queued: 1000, locked: 96 })).toBe(32);
    expect(locksToTake({ transactions: 16, usersPerTransaction: 64, queued: 5000, locked: 0 })).toBe(
      MAX_LOCKS_PER_ROUND,
    );
    expect(MAX_LOCKS_PER_ROUND).toBe(512);
  });

  it('takes none for nobody in line, with enough locked, or for a handful while others are locked', () => {
    expect(locksToTake({ ...rule, queued: 0, locked: 0 })).toBe(0);
    expect(locksToTake({ ...rule, queued: 1000, locked: 128 })).toBe(0);
    // 8 wanted, fewer than a transaction's worth of the 1000 in line: wait for a fuller round
    expect(locksToTake({ ...rule, queued: 1000, locked: 120 })).toBe(0);
    // but the last 5 in line are taken
    expect(locksToTake({ ...rule, queued: 5, locked: 120 })).toBe(5);
  });
});

describe('lock rounds', () => {
  it('takes the free locks and reports the busy one in one round trip that also gives back the released locks', async () => {
    const { redis, counts } = await countingRedis(env.redisUrl, env.prefix);
    cleanup.push(() => redis.disconnect());
    const locks = new UserLocks(redis, { prefix: env.prefix });
    // the scripts are loaded into Redis first (a first call of a script may take two round trips)
    await locks.exchange(await held(locks, ['lr-warm-1', 'lr-warm-2']), ['lr-warm-3', 'lr-warm-4'], NO_WAIT);
    await locks.status('lr-warm-1');
    await env.redis.set(key('lr-busy'), 'other-service', 'PX', 10_000);
    const [done1, done2] = await held(locks, ['lr-done-1', 'lr-done-2']);
    // lr-done-2's lock expired and was taken by someone else, with a token of theirs
    await env.redis.set(key('lr-done-2'), 'new-holder', 'PX', 10_000);
    const releasing = [
      trackedUser('lr-done-1', { handle: done1!, outcome: SETTLED }),
      trackedUser('lr-done-2', { handle: done2!, outcome: SETTLED }),
    ];
    const users = [trackedUser('lr-a'), trackedUser('lr-busy'), trackedUser('lr-b')];
    const { rounds, report, roundEnds } = lockRounds(locks, NO_WAIT);
    counts.reset();

    rounds.round(users, releasing);
    expect(rounds.locking).toBe(3);
    await roundEnds(2); // the round, then the busy lock's (empty) wait
    expect(rounds.locking).toBe(0);

    // one round trip for the two releases and the three attempts (then the busy lock's holder is read)
    expect(counts.lockKeysByRoundTrip[0]).toEqual(
      ['lr-done-1', 'lr-done-2', 'lr-a', 'lr-busy', 'lr-b'].map((uid) => key(uid)),
    );
    expect(counts.lockKeysByRoundTrip.filter((keys) => keys.length > 0)).toHaveLength(2);
    expect(report.locked).toEqual([
      { uid: 'lr-a', waited: false },
      { uid: 'lr-b', waited: false },
    ]);
    expect(await env.redis.get(key('lr-a'))).toBe(users[0]!.handle!.value);
    expect(await env.redis.get(key('lr-b'))).toBe(users[2]!.handle!.value);
    expect(users.map((user) => user.delivered.length)).toEqual([0, 1, 0]);
    expect(users[1]!.delivered[0]).toMatchObject({ kind: 'failed', failure: { reason: 'LOCK_BUSY', transient: true } });
    expect(users[1]!.delivered[0]!.kind === 'failed' && users[1]!.delivered[0]!.failure.message).toContain(
      'other-service',
    );
    expect(await env.redis.get(key('lr-busy'))).toBe('other-service');
    // the released users' outcomes are delivered; only our own lock was deleted
    expect(releasing.map((user) => user.delivered)).toEqual([[SETTLED], [SETTLED]]);
    expect(await env.redis.exists(key('lr-done-1'))).toBe(0);
    expect(await env.redis.get(key('lr-done-2'))).toBe('new-holder');
  });

  it('waits for a busy lock off the round and takes it once its holder lets go; that user goes first', async () => {
    const locks = new UserLocks(env.redis, { prefix: env.prefix });
    await env.redis.set(key('lw-busy'), 'other-service', 'PX', 10_000);
    const users = [trackedUser('lw-free'), trackedUser('lw-busy')];
    const { rounds, report, roundEnds } = lockRounds(locks, LONG_WAIT);
    rounds.round(users, []);
    await roundEnds(1);
    expect(report.locked).toEqual([{ uid: 'lw-free', waited: false }]);
    expect(rounds.locking).toBe(0); // the busy one waits outside the round
    await env.redis.del(key('lw-busy')); // its holder lets go
    await roundEnds(2);
    expect(report.locked).toEqual([
      { uid: 'lw-free', waited: false },
      { uid: 'lw-busy', waited: true },
    ]);
    expect(users[1]!.handle!.retries).toBeGreaterThan(0);
    expect(await env.redis.get(key('lw-busy'))).toBe(users[1]!.handle!.value);
    expect(users.map((user) => user.delivered)).toEqual([[], []]);
  });

  it('fails a user whose lock stays busy through the policy (LOCK_BUSY, transient)', async () => {
    const locks = new UserLocks(env.redis, { prefix: env.prefix });
    await env.redis.set(key('ls-busy'), 'other-service', 'PX', 10_000);
    const user = trackedUser('ls-busy');
    const { rounds, report } = lockRounds(locks, { ...LONG_WAIT, retries: 2 });
    rounds.round([user], []);
    const outcome = await user.settled;
    expect(outcome).toMatchObject({ kind: 'failed', failure: { reason: 'LOCK_BUSY', transient: true } });
    expect(outcome.kind === 'failed' && outcome.failure.message).toMatch(/held by other-service after 3 attempts/);
    expect(report).toMatchObject({ locked: [], requeued: [] });
  });

  it('puts back in line a user whose wait overlapped a PostgreSQL pause, instead of failing it', async () => {
    const locks = new UserLocks(env.redis, { prefix: env.prefix });
    await env.redis.set(key('lp-busy'), 'other-service', 'PX', 10_000);
    const user = trackedUser('lp-busy');
    const postgres = gate('PostgreSQL', () => env.pool.query('select 1'));
    const { rounds, report, roundEnds } = lockRounds(
      locks,
      { ...LONG_WAIT, retries: 3 },
      {
        postgresGate: postgres,
        // the round found the lock busy and its wait has begun: PostgreSQL pauses (and comes back by its probe)
        onRoundEnd: (ends) => {
          if (ends === 1)
            postgres.fault(Object.assign(new Error('the database system is shutting down'), { code: '57P03' }));
        },
      },
    );
    rounds.round([user], []);
    await roundEnds(2);
    expect(report.requeued).toEqual(['lp-busy']);
    expect(user.delivered).toEqual([]);
    expect(user.handle).toBeUndefined();
  });

  it('interrupts users when the worker stops: during a wait, and a round sent after (which still gives back its releases)', async () => {
    const locks = new UserLocks(env.redis, { prefix: env.prefix });
    await env.redis.set(key('li-busy'), 'other-service', 'PX', 10_000);
    const stopping = new AbortController();
    const waiting = trackedUser('li-busy');
    const { rounds, report, roundEnds } = lockRounds(locks, REWARD_POLICY, {
      signal: stopping.signal,
      onRoundEnd: (ends) => {
        if (ends === 1) stopping.abort(); // the wait (56 s under the reward policy) has begun
      },
    });
    rounds.round([waiting], []);
    expect(await waiting.settled).toBe(INTERRUPTED);
    await roundEnds(2);

    const [finished] = await held(locks, ['li-done']);
    const releasing = trackedUser('li-done', { handle: finished!, outcome: SETTLED });
    const late = trackedUser('li-late');
    rounds.round([late], [releasing]);
    expect(await late.settled).toBe(INTERRUPTED);
    expect(releasing.delivered).toEqual([SETTLED]);
    expect(await env.redis.exists(key('li-late'), key('li-done'))).toBe(0);
    expect(report).toMatchObject({ locked: [], requeued: [] });
  });

  it('puts the users back in line and pauses the Redis gate when Redis cannot be reached; the releases are left to expire', async () => {
    const redis = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
    const locks = new UserLocks(redis, { prefix: env.prefix });
    const [finished] = await held(locks, ['lu-done']);
    await redis.quit(); // the connection is gone
    const releasing = trackedUser('lu-done', { handle: finished!, outcome: SETTLED });
    const users = [trackedUser('lu-a'), trackedUser('lu-b')];
    const gateOfRedis = redisGate(redis);
    const { rounds, report, roundEnds } = lockRounds(locks, NO_WAIT, { redisGate: gateOfRedis });
    rounds.round(users, [releasing]);
    await roundEnds(1);
    expect(report.requeued).toEqual(['lu-a', 'lu-b']);
    expect(users.map((user) => user.delivered)).toEqual([[], []]);
    expect(gateOfRedis.isOpen).toBe(false);
    expect(releasing.delivered).toEqual([SETTLED]);
    expect(await env.redis.get(key('lu-done'))).toBe(finished!.value);
    expect(await env.redis.exists(key('lu-a'), key('lu-b'))).toBe(0);
  });

  it("fails the round's users (UNKNOWN, transient) on any other Redis error", async () => {
    const locks = new UserLocks(env.redis, { prefix: env.prefix });
    const users = [trackedUser('le-a'), trackedUser('le-b')];
    const gateOfRedis = redisGate();
    // Redis refuses a lock without a time to live
    const { rounds, report } = lockRounds(locks, { ...NO_WAIT, ttlMs: 0 }, { redisGate: gateOfRedis });
    rounds.round(users, []);
    for (const user of users) {
      const outcome = await user.settled;
      expect(outcome).toMatchObject({ kind: 'failed', failure: { reason: 'UNKNOWN', transient: true } });
      expect(outcome.kind === 'failed' && outcome.failure.message).toMatch(
        /^could not take the user's lock: .*invalid expire time/,
      );
    }
    expect(gateOfRedis.isOpen).toBe(true);
    expect(report).toMatchObject({ locked: [], requeued: [] });
  });
});
