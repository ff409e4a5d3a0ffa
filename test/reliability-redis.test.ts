import { afterEach, describe, expect, it } from 'vitest';
import { reconcile } from '../src/reconcile/reconcile.js';
import { useTestEnvironment } from './support/environment.js';
import { balances, rewardRows, settledRewards } from './support/batches.js';
import {
  sleep,
  startRedisServer,
  startWindfall,
  waitFor,
  waitForStarted,
  type RedisServer,
  type WindfallProcess,
} from './support/redis-servers.js';

const env = useTestEnvironment();
let redis: RedisServer | undefined;
let workers: WindfallProcess[] = [];
afterEach(async () => {
  await Promise.all(workers.map((worker) => worker.kill9()));
  workers = [];
  await redis?.destroy();
  redis = undefined;
});

const settled = (batchId: string): Promise<number> => settledRewards(env.pool, batchId);

/** Rewards of each batch: enough that the workers are still busy when Redis goes down. */
const TOTAL = 24_000;

/**
 * Runs two workers on `server`, enqueues {@link TOTAL} rewards once both have started, and restarts Redis once a
 * quarter is settled.
 */
async function restartMidBatch(
  batchId: string,
  server: RedisServer,
  workerEnv: Record<string, string>,
): Promise<{ expected: Map<string, bigint>; settledAtRestart: number }> {
  const environment = env.env({
    REDIS_URL: server.url,
    WINDFALL_CONCURRENCY: '2',
    WINDFALL_JOB_LOCK_MS: '2000',
    LOG_LEVEL: 'info',
    ...workerEnv,
  });
  workers = [startWindfall(['worker'], environment), startWindfall(['worker'], environment)];
  // a worker still starting when Redis goes down exits (its start-up check): fault the batch, not the start-up
  await waitForStarted(workers);

  const producer = await env.open({ redisUrl: server.url, chunkSize: 100 });
  const rows = rewardRows(TOTAL, (n) => ({
    rewardId: `${batchId}-${n}`,
    uid: `${batchId}-u${(n * 13) % 6000}`,
    amount: 1 + (n % 29),
  }));
  const expected = new Map<string, bigint>();
  for (const row of rows) expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
  await producer.producer.enqueueRewards(rows, { batchId });
  await producer.close();

  await waitFor(async () => (await settled(batchId)) >= TOTAL / 4, 'a quarter of the rewards settled', 60_000, 20);
  const settledAtRestart = await settled(batchId);
  await server.shutdown();
  await sleep(1500);
  await server.restart();
  return { expected, settledAtRestart };
}

describe('Redis shut down and restarted mid-batch', () => {
  it('with AOF (appendfsync always): the jobs survive, every balance exact, nothing dead-lettered', async () => {
    redis = await startRedisServer({ aof: true });
    const { expected, settledAtRestart } = await restartMidBatch('aof', redis, { WINDFALL_RECOVERY_INTERVAL_MS: '0' });
    expect(settledAtRestart).toBeLessThan(TOTAL);
    await waitFor(async () => (await settled('aof')) >= TOTAL, 'every reward settled after the restart', 120_000);
    expect(await Promise.all(workers.map((worker) => worker.stop()))).toEqual([0, 0]);

    const { rows } = await env.pool.query<{ n: number }>(`select count(*)::int as n from dead_letters`);
    expect(rows[0]!.n).toBe(0);
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    const books = await reconcile(env.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
    expect(books.rewards).toMatchObject({ total: TOTAL, applied: TOTAL });
  }, 180_000);

  it('without AOF the queued jobs are lost; the rewards wait in PostgreSQL and the recovery watchdog re-adds their jobs', async () => {
    redis = await startRedisServer({ aof: false });
    const { expected, settledAtRestart } = await restartMidBatch('noaof', redis, {
      WINDFALL_RECOVERY_INTERVAL_MS: '1000',
    });
    expect(settledAtRestart).toBeLessThan(TOTAL);
    await waitFor(
      async () => (await settled('noaof')) >= TOTAL,
      'every reward settled after the watchdog re-added the lost jobs',
      120_000,
    );
    const codes = await Promise.all(workers.map((worker) => worker.stop()));
    expect(codes, workers.map((worker) => worker.output().slice(-3000)).join('\n----\n')).toEqual([0, 0]);
    expect(workers.map((worker) => worker.output()).join('\n')).toMatch(/:missing.*jobs re-added/);

    const { rows } = await env.pool.query<{ n: number }>(`select count(*)::int as n from dead_letters`);
    expect(rows[0]!.n).toBe(0);
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 180_000);

  it('a worker told to stop just as Redis comes back exits promptly (its fetch loop is not waited for)', async () => {
    redis = await startRedisServer({ aof: false });
    const worker = startWindfall(
      ['worker'],
      env.env({ REDIS_URL: redis.url, WINDFALL_RECOVERY_INTERVAL_MS: '0', LOG_LEVEL: 'info' }),
    );
    workers = [worker];
    await waitFor(() => worker.output().includes('worker started'), 'the worker to start', 30_000);
    await redis.shutdown();
    await sleep(300);
    await redis.restart();
    const stoppedAt = Date.now();
    expect(await worker.stop()).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(15_000);
    expect(worker.output()).toContain('worker stopped');
  }, 60_000);
});
