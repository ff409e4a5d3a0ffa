import { describe, expect, it } from 'vitest';
import { getBatchReport } from '../src/status/batch-status.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import type { Windfall } from '../src/runtime/windfall.js';
import { useTestEnvironment } from './support/environment.js';
import { balances, rewardRows, waitForBatchDone } from './support/batches.js';
import { startWindfall, waitFor, type WindfallProcess } from './support/redis-servers.js';

const env = useTestEnvironment();

/** Rewards of each batch: two big jobs of one shard queue, every job in flight at each kill. */
const TOTAL = 20_000;

/** {@link TOTAL} rewards of half as many users in two big jobs of one shard queue. */
async function enqueueTwoJobs(windfall: Windfall, batchId: string): Promise<Map<string, bigint>> {
  const rows = rewardRows(TOTAL, (n) => ({
    rewardId: `${batchId}-${n}`,
    uid: `${batchId}-u${n % (TOTAL / 2)}`,
    amount: 1 + (n % 17),
  }));
  const expected = new Map<string, bigint>();
  for (const row of rows) expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
  const result = await windfall.producer.enqueueRewards(rows, { batchId });
  expect(result.chunks).toBe(2);
  return expected;
}

const applied = async (batchId: string): Promise<number> => (await getBatchReport(env.pool, batchId))?.applied ?? 0;

/**
 * Kills the worker process with SIGKILL twice in a row: the second victim is killed after it took over the jobs the
 * first one was running (only two jobs exist, both started by the first worker), then a third worker finishes.
 */
async function killTwiceOnTheSameJobs(batchId: string, workerEnv: NodeJS.ProcessEnv): Promise<WindfallProcess> {
  const first = startWindfall(['worker'], workerEnv);
  await waitFor(async () => (await applied(batchId)) >= 400, 'the first worker to apply 400 rewards', 60_000);
  await first.kill9();
  const atFirstKill = await applied(batchId);

  const second = startWindfall(['worker'], workerEnv);
  // the second worker gets the killed jobs back after the job lock (1 s) and the killed locks' TTL (2 s) pass
  await waitFor(
    async () => (await applied(batchId)) >= atFirstKill + 300,
    'the second worker to take the jobs over and apply 300 more',
    60_000,
  );
  await second.kill9();
  const atSecondKill = await applied(batchId);
  expect(atSecondKill).toBeLessThan(TOTAL);
  return startWindfall(['worker'], workerEnv);
}

describe('worker processes killed with SIGKILL mid-batch', () => {
  it('twice in a row on the same jobs: every balance exact, nothing twice, nothing dead-lettered, reconcile clean', async () => {
    const producer = await env.open({ shards: 1, chunkSize: TOTAL / 2 });
    const expected = await enqueueTwoJobs(producer, 'k2');
    const workerEnv = env.env({
      WINDFALL_SHARDS: '1',
      // small transactions, one at a time: the jobs are still in flight at each kill, however fast the machine
      WINDFALL_CONCURRENCY: '1',
      WINDFALL_USERS_PER_TRANSACTION: '8',
      WINDFALL_JOB_LOCK_MS: '1000',
      WINDFALL_REWARD_LOCK_TTL_MS: '2000',
      WINDFALL_RECOVERY_INTERVAL_MS: '0',
    });
    const survivor = await killTwiceOnTheSameJobs('k2', workerEnv);
    const report = await waitForBatchDone(env.pool, 'k2', 90_000);
    expect(await survivor.stop()).toBe(0);

    expect(report).toMatchObject({ total: TOTAL, applied: TOTAL, duplicate: 0, deadLettered: 0, status: 'completed' });
    // both jobs were taken over twice: the kills hit the same jobs
    const jobs = await producer.queues.shard(0).getJobs(['completed']);
    expect(jobs.filter((job) => job.data.batchId === 'k2').map((job) => job.stalledCounter)).toEqual([2, 2]);
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    const books = await reconcile(env.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
    expect(books.ledgerEntries).toBe(TOTAL);
  }, 150_000);

  it('a job BullMQ fails for stalling more than WINDFALL_MAX_STALLED is resumed by the recovery watchdog, not dead-lettered', async () => {
    const producer = await env.open({ shards: 1, chunkSize: TOTAL / 2 });
    const expected = await enqueueTwoJobs(producer, 'k3');
    const workerEnv = env.env({
      WINDFALL_SHARDS: '1',
      // small transactions, one at a time: the jobs are still in flight at each kill, however fast the machine
      WINDFALL_CONCURRENCY: '1',
      WINDFALL_USERS_PER_TRANSACTION: '8',
      WINDFALL_JOB_LOCK_MS: '1000',
      WINDFALL_REWARD_LOCK_TTL_MS: '2000',
      // the second take-over fails the job; the watchdog looks for such jobs every second
      WINDFALL_MAX_STALLED: '1',
      WINDFALL_RECOVERY_INTERVAL_MS: '1000',
      LOG_LEVEL: 'warn',
    });
    const survivor = await killTwiceOnTheSameJobs('k3', workerEnv);
    const report = await waitForBatchDone(env.pool, 'k3', 90_000);
    expect(await survivor.stop()).toBe(0);

    expect(report).toMatchObject({ total: TOTAL, applied: TOTAL, deadLettered: 0, status: 'completed' });
    expect(survivor.output()).toContain('open work without a live job found: jobs re-added');
    expect(survivor.output()).toMatch(/:failed/);
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 150_000);
});
