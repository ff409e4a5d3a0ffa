import { describe, expect, it } from 'vitest';
import { reconcile } from '../src/reconcile/reconcile.js';
import { useTestEnvironment } from './support/environment.js';
import { useFaultPools } from './support/fault-pools.js';
import { rewardRows, settledRewards } from './support/batches.js';
import { queryRetrying, startWindfall, terminateBackends, waitFor, waitForStarted } from './support/redis-servers.js';

const env = useTestEnvironment();
const faults = useFaultPools(env);

const settled = (batchId: string): Promise<number> => settledRewards(faults.pool, batchId);

/** Large enough that the workers are still busy after several fault rounds (each waits for 1 % more progress). */
const TOTAL = 48_000;

describe('PostgreSQL backends terminated mid-batch', () => {
  it('repeatedly (pg_terminate_backend), even with a single job attempt: nothing dead-lettered, every balance exact', async () => {
    const producer = await env.open({ chunkSize: 100, jobAttempts: 1 });
    const rows = rewardRows(TOTAL, (n) => ({
      rewardId: `pgt-${n}`,
      uid: `pgt-u${(n * 31) % 1500}`,
      amount: 1 + (n % 23),
    }));
    const expected = new Map<string, bigint>();
    for (const row of rows) expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
    await producer.producer.enqueueRewards(rows, { batchId: 'pgt' });
    await producer.close();

    const workerEnv = env.env({ WINDFALL_CONCURRENCY: '4', LOG_LEVEL: 'info' });
    const workers = [startWindfall(['worker'], workerEnv), startWindfall(['worker'], workerEnv)];
    // both workers running before the first round: the faults are for the work, not the start-up checks
    await waitForStarted(workers);
    await waitFor(async () => (await settled('pgt')) >= 500, '500 rewards settled', 60_000, 50);

    const rounds: { settled: number; terminated: number }[] = [];
    while (rounds.length < 6) {
      const before = await settled('pgt');
      if (before >= TOTAL) break;
      rounds.push({ settled: before, terminated: await terminateBackends(faults.admin, faults.database()) });
      // the next fault once the workers have made progress again (1 % of the batch), however fast this machine is
      await waitFor(
        async () => (await settled('pgt')) >= Math.min(TOTAL, before + TOTAL / 100),
        'progress after a round of terminations',
        60_000,
        20,
      );
    }
    await waitFor(async () => (await settled('pgt')) >= TOTAL, 'every reward settled', 120_000, 100);
    const codes = await Promise.all(workers.map((worker) => worker.stop()));
    const output = workers.map((worker) => worker.output()).join('\n');

    // the faults happened mid-batch, hit the workers' connections, and were retried in place
    expect(rounds.length, JSON.stringify(rounds)).toBeGreaterThanOrEqual(4);
    // (a round may find a worker between connections: its pool opens them on demand)
    expect(
      rounds.every((round) => round.settled < TOTAL),
      JSON.stringify(rounds),
    ).toBe(true);
    expect(rounds.filter((round) => round.terminated > 0).length, JSON.stringify(rounds)).toBeGreaterThanOrEqual(4);
    // each round paused the workers' use of PostgreSQL (logged once per pause), which then resumed by itself
    expect(output).toMatch(/PostgreSQL cannot work now: pausing/);
    expect(codes, output.slice(-4000)).toEqual([0, 0]);

    const { rows: dead } = await queryRetrying<{ n: number }>(
      faults.pool,
      'select count(*)::int as n from dead_letters',
    );
    expect(dead[0]!.n, output.slice(-3000)).toBe(0);
    const { rows: wallets } = await queryRetrying<{ uid: string; balance: string }>(
      faults.pool,
      'select uid, balance::text from wallets',
    );
    const actual = new Map(wallets.map((row) => [row.uid, BigInt(row.balance)]));
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    const books = await reconcile(faults.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
    expect(books.rewards).toMatchObject({ total: TOTAL, applied: TOTAL, deadLettered: 0 });
    expect(books.ledgerEntries).toBe(TOTAL);
  }, 180_000);
});
