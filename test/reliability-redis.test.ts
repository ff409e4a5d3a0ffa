import { afterEach, describe, expect, it } from 'vitest';
import { reconcile } from '../src/reconcile/reconcile.js';
import { useTestEnvironment } from './support/environment.js';
import { balances, rewardRows } from './support/batches.js';
import { sleep, startRedisServer, startWindfall, waitFor, type RedisServer, type WindfallProcess } from './support/redis-servers.js';

const env = useTestEnvironment();
let redis: RedisServer | undefined;
let workers: WindfallProcess[] = [];
afterEach(async () => {
  await Promise.all(workers.map((worker) => worker.kill9()));
  workers = [];
  await redis?.destroy();
  redis = undefined;
});

const settled = async (batchId: string): Promise<number> => {
  const { rows } = await env.pool.query<{ n: number }>(
    `select (select count(*) from ledger_entries where batch_id = $1)::int
          + (select coalesce(sum(reward_count), 0) from dead_letters where batch_id = $1)::int as n`,
    [batchId],
  );
  return rows[0]!.n;
};

/** Enqueues 6,000 rewards on `server`, runs two workers on it, and restarts Redis once a quarter is settled. */
async function restartMidBatch(batchId: string, server: RedisServer, workerEnv: Record<string, string>): Promise<{ expected: Map<string, bigint>; settledAtRestart: number }> {
  const producer = await env.open({ redisUrl: server.url, chunkSize: 100 });
  const rows = rewardRows(6000, (n) => ({ rewardId: `${batchId}-${n}`, uid: `${batchId}-u${(n * 13) % 1500}`, amount: 1 + (n % 29) }));
  const expected = new Map<string, bigint>();
  for (const row of rows) expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
  await producer.producer.enqueueRewards(rows, { batchId });
  await producer.close();

  const environment = env.env({ REDIS_URL: server.url, WINDFALL_CONCURRENCY: '4', WINDFALL_JOB_LOCK_MS: '2000', ...workerEnv });
  workers = [startWindfall(['worker'], environment), startWindfall(['worker'], environment)];
  await waitFor(async () => (await settled(batchId)) >= 1500, '1500 rewards settled', 60_000, 50);
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
    expect(settledAtRestart).toBeLessThan(6000);
    await waitFor(async () => (await settled('aof')) >= 6000, 'every reward settled after the restart', 120_000);
    expect(await Promise.all(workers.map((worker) => worker.stop()))).toEqual([0, 0]);

    const { rows } = await env.pool.query<{ n: number }>(`select count(*)::int as n from dead_letters`);
    expect(rows[0]!.n).toBe(0);
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    const books = await reconcile(env.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
    expect(books.rewards).toMatchObject({ total: 6000, applied: 6000 });
  }, 180_000);

  it('without AOF the queued jobs are lost; the rewards wait in PostgreSQL and the recovery watchdog re-adds their jobs', async () => {
    redis = await startRedisServer({ aof: false });
    const { expected, settledAtRestart } = await restartMidBatch('noaof', redis, { WINDFALL_RECOVERY_INTERVAL_MS: '1000', LOG_LEVEL: 'warn' });
    expect(settledAtRestart).toBeLessThan(6000);
    await waitFor(async () => (await settled('noaof')) >= 6000, 'every reward settled after the watchdog re-added the lost jobs', 120_000);
    expect(await Promise.all(workers.map((worker) => worker.stop()))).toEqual([0, 0]);
    expect(workers.map((worker) => worker.output()).join('\n')).toMatch(/:missing.*jobs re-added/);

    const { rows } = await env.pool.query<{ n: number }>(`select count(*)::int as n from dead_letters`);
    expect(rows[0]!.n).toBe(0);
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 180_000);

  it('a worker told to stop just as Redis comes back exits promptly (its fetch loop is not waited for)', async () => {
    redis = await startRedisServer({ aof: false });
    const worker = startWindfall(['worker'], env.env({ REDIS_URL: redis.url, WINDFALL_RECOVERY_INTERVAL_MS: '0', LOG_LEVEL: 'info' }));
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
