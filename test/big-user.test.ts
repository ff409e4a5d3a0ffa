import { describe, expect, it } from 'vitest';
import { listDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import { balances, rewardRows, waitForBatchDone } from './support/batches.js';
import { eventually } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();
const REWARDS = 20_000;

describe('a user with very many rewards in one batch', () => {
  it('is dead-lettered, replayed and applied in ONE transaction, in time linear in its rewards', async () => {
    const windfall = await env.open({
      jobAttempts: 1,
      rewardLockPolicy: { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 60_000 },
    });
    await windfall.createWorker().start();
    await env.redis.set(`${env.prefix}:lock:bu-big`, 'other-service', 'PX', 600_000);
    const rows = [
      ...rewardRows(REWARDS, (n) => ({ rewardId: `bu-r${n}`, uid: 'bu-big', amount: 1 + (n % 3) })),
      ...rewardRows(400, (n) => ({ rewardId: `bu-s${n}`, uid: `bu-u${n % 100}`, amount: 2 })),
    ];
    const expected = rows.filter((row) => row.uid === 'bu-big').reduce((sum, row) => sum + BigInt(row.amount), 0n);
    await windfall.producer.enqueueRewards(rows, { batchId: 'bu' });
    const first = await waitForBatchDone(env.pool, 'bu');
    expect(first).toMatchObject({ applied: 400, deadLettered: REWARDS, status: 'completed_with_failures' });
    const [entry] = await listDeadLetters(env.pool, { batchId: 'bu', rewards: REWARDS });
    expect(entry).toMatchObject({ uid: 'bu-big', reason: 'LOCK_BUSY', rewardCount: REWARDS, amount: String(expected) });
    expect(entry!.rewards).toHaveLength(REWARDS);

    await env.redis.del(`${env.prefix}:lock:bu-big`);
    const started = Date.now();
    expect((await windfall.deadLetters.replay({ batchId: 'bu' })).replayed).toHaveLength(1);
    await eventually(
      async () => (await waitForBatchDone(env.pool, 'bu')).status === 'completed',
      'the replay to apply the big user',
      60_000,
    );
    expect(Date.now() - started).toBeLessThan(30_000);
    expect((await balances(env.pool)).get('bu-big')).toBe(expected);
    const { rows: transactions } = await env.pool.query(
      `select count(distinct xmin::text)::int as n from ledger_entries where uid = 'bu-big'`,
    );
    expect(transactions[0].n).toBe(1);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 120_000);
});
