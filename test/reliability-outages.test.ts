import { afterEach, describe, expect, it } from 'vitest';
import { reconcile } from '../src/reconcile/reconcile.js';
import { rewardRows, settledRewards } from './support/batches.js';
import { useTestEnvironment } from './support/environment.js';
import { useFaultPools } from './support/fault-pools.js';
import {
  queryRetrying,
  redisCli,
  sleep,
  startRedisServer,
  startWindfall,
  terminateBackends,
  waitFor,
  type RedisServer,
  type WindfallProcess,
} from './support/redis-servers.js';

const env = useTestEnvironment();
const faults = useFaultPools(env, (pools) =>
  pools.admin.query(`alter database "${pools.database()}" reset default_transaction_read_only`),
);
let redis: RedisServer | undefined;
let workers: WindfallProcess[] = [];

afterEach(async () => {
  await Promise.all(workers.map((worker) => worker.kill9()));
  workers = [];
  await redis?.destroy();
  redis = undefined;
});

const settled = (batchId: string): Promise<number> => settledRewards(faults.pool, batchId);

const deadLetters = async (): Promise<number> =>
  (await queryRetrying<{ n: number }>(faults.pool, 'select count(*)::int as n from dead_letters')).rows[0]!.n;

/** Enqueues two batches of `each` rewards through `redisUrl`, 4 per user. */
async function enqueueTwo(prefix: string, redisUrl: string, each: number): Promise<string[]> {
  const producer = await env.open({ redisUrl, chunkSize: 500 });
  const ids = [`${prefix}-a`, `${prefix}-b`];
  for (const batchId of ids) {
    await producer.producer.enqueueRewards(
      rewardRows(each, (n) => ({
        rewardId: `${batchId}-${n}`,
        uid: `${prefix}-u${n % (each / 4)}`,
        amount: 1 + (n % 9),
      })),
      { batchId },
    );
  }
  await producer.close();
  return ids;
}

const logLines = (worker: WindfallProcess): number =>
  worker
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{')).length;

describe('infrastructure faults pause the worker; they never dead-letter healthy rewards', () => {
  it('Redis at its memory limit (noeviction) mid-batch: nothing dead-lettered, a few log lines, everything applied once memory is freed', async () => {
    redis = await startRedisServer({ aof: false });
    const ids = await enqueueTwo('oom', redis.url, 20_000);
    // a lock policy that would dead-letter at once if Redis errors counted as busy locks; one job attempt
    const worker = startWindfall(
      ['worker'],
      env.env({
        REDIS_URL: redis.url,
        LOG_LEVEL: 'info',
        WINDFALL_JOB_ATTEMPTS: '1',
        WINDFALL_REWARD_LOCK_RETRIES: '0',
        WINDFALL_RECOVERY_INTERVAL_MS: '0',
      }),
    );
    workers = [worker];
    await waitFor(async () => (await settled(ids[0]!)) >= 2000, 'the first batch under way', 60_000, 20);
    // Redis refuses every write from now on (used memory is far above 1 MB)
    expect((await redisCli(redis.port, ['config', 'set', 'maxmemory', '1mb'])).output).toContain('OK');
    await waitFor(() => worker.output().includes('Redis cannot work now: pausing'), 'the worker to pause', 30_000, 20);
    const linesAtPause = logLines(worker);
    const settledAtPause = await settled(ids[0]!);
    await sleep(5000); // the outage lasts, with the worker's probes failing
    expect(await deadLetters()).toBe(0);
    expect((await redisCli(redis.port, ['config', 'set', 'maxmemory', '0'])).output).toContain('OK');
    await waitFor(
      async () => (await settled(ids[0]!)) >= 20_000 && (await settled(ids[1]!)) >= 20_000,
      'both batches settled',
      120_000,
    );
    expect(await worker.stop()).toBe(0);

    const output = worker.output();
    expect(settledAtPause).toBeLessThan(20_000);
    expect(await deadLetters()).toBe(0);
    expect(output).toContain('Redis works again: resuming');
    // the outage is logged once (and a summary every 30 s), not once per user, job or retry
    expect(logLines(worker) - linesAtPause, output.slice(-3000)).toBeLessThan(100);
    expect(output).not.toMatch(/failed for good|dead-lettered/);
    const books = await reconcile(faults.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
    expect(books.rewards).toMatchObject({ deadLettered: 0, unsettled: 0 });
    expect(books.rewards.applied).toBe(books.rewards.total);
  }, 240_000);

  it('PostgreSQL read-only (a failover) mid-batch with one job attempt: the worker waits, nothing is dead-lettered, no job fails', async () => {
    const ids = await enqueueTwo('ro', env.redisUrl, 12_000);
    const worker = startWindfall(
      ['worker'],
      env.env({ LOG_LEVEL: 'info', WINDFALL_JOB_ATTEMPTS: '1', WINDFALL_RECOVERY_INTERVAL_MS: '0' }),
    );
    workers = [worker];
    await waitFor(async () => (await settled(ids[0]!)) >= 1000, 'the first batch under way', 60_000, 20);
    // new sessions are read-only; the workers' current ones are cut, as a failover does
    await faults.admin.query(`alter database "${faults.database()}" set default_transaction_read_only = on`);
    await terminateBackends(faults.admin, faults.database());
    await waitFor(
      () => worker.output().includes('PostgreSQL cannot work now: pausing'),
      'the worker to pause',
      30_000,
      20,
    );
    const settledAtPause = await settled(ids[0]!);
    await sleep(4000);
    expect(await deadLetters()).toBe(0);
    await faults.admin.query(`alter database "${faults.database()}" reset default_transaction_read_only`);
    await terminateBackends(faults.admin, faults.database());
    await waitFor(
      async () => (await settled(ids[0]!)) >= 12_000 && (await settled(ids[1]!)) >= 12_000,
      'both batches settled',
      120_000,
    );
    expect(await worker.stop()).toBe(0);

    const output = worker.output();
    expect(settledAtPause).toBeLessThan(12_000);
    expect(output).toContain('PostgreSQL works again: resuming');
    expect(output).not.toMatch(/failed for good|dead-lettered|will be retried/);
    expect(await deadLetters()).toBe(0);
    const { rows } = await queryRetrying<{ n: number }>(
      faults.pool,
      `select count(*)::int as n from reward_chunks where completed_at is null`,
    );
    expect(rows[0]!.n).toBe(0);
    const books = await reconcile(faults.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
    expect(books.rewards).toMatchObject({ deadLettered: 0, unsettled: 0 });
    expect(books.rewards.applied).toBe(books.rewards.total);
  }, 240_000);
});
