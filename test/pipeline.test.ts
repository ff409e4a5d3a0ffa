import { describe, expect, it } from 'vitest';
import { BatchValidationError } from '../src/rewards/batch-errors.js';
import { getBatchReport } from '../src/status/batch-status.js';
import { listDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { shardOf } from '../src/queue/shard-routing.js';
import { useTestEnvironment } from './support/environment.js';
import { balances, ledgerMismatches, rewardRows, waitForBatchDone } from './support/batches.js';

const env = useTestEnvironment();

describe('reward pipeline (producer → shard queues → worker → ledger)', () => {
  it("applies the seed's example through the queue", async () => {
    const windfall = await env.open();
    await windfall.createWorker().start();
    const result = await windfall.producer.enqueueRewards(
      [
        { rewardId: 'p-seed-1', uid: 'p-user1', amount: 100, description: '活动奖励' },
        { rewardId: 'p-seed-2', uid: 'p-user2', amount: '200', description: '活动奖励' },
      ],
      { batchId: 'seed-example' },
    );
    expect(result).toMatchObject({ batchId: 'seed-example', total: 2, users: 2, created: true });
    const report = await waitForBatchDone(env.pool, 'seed-example');
    expect(report).toMatchObject({
      status: 'completed',
      total: 2,
      applied: 2,
      duplicate: 0,
      deadLettered: 0,
      pending: 0,
    });
    const all = await balances(env.pool);
    expect(all.get('p-user1')).toBe(100n);
    expect(all.get('p-user2')).toBe(200n);
    // the stored status is brought up to date once the last chunk's job completes, just after its users commit
    await expect
      .poll(
        async () => {
          const { rows } = await env.pool.query(`select status from reward_batches where batch_id = 'seed-example'`);
          return rows[0].status;
        },
        { timeout: 10_000 },
      )
      .toBe('completed');
  });

  it('keeps balances exact across concurrent overlapping batches, a re-enqueued batch id and repeated rewardIds', async () => {
    const a = await env.open({ concurrency: 4, chunkSize: 50 });
    const b = await env.open({ concurrency: 4, chunkSize: 50 });
    await a.createWorker({ shards: [0, 1, 2, 3] }).start();
    await b.createWorker({ shards: [4, 5, 6, 7] }).start();
    await a.createWorker({ shards: [0, 1, 2, 3, 4, 5, 6, 7] }).start();
    const users = 300;
    const expected = new Map<string, bigint>();
    const batch = (name: string, offset: number, repeatFrom?: string) =>
      rewardRows(1200, (n) => {
        const uid = `o-u${(n * 7 + offset) % users}`;
        const amount = 1 + ((n + offset) % 97);
        return { rewardId: repeatFrom && n % 3 === 0 ? `${repeatFrom}-${n}` : `${name}-${n}`, uid, amount };
      });
    const first = batch('o1', 0);
    const second = batch('o2', 11);
    // the third batch repeats a third of the first batch's rewards (same ids, users and amounts)
    const third = batch('o3', 0, 'o1');
    for (const rows of [first, second, third]) {
      for (const row of rows) {
        if (rows === third && row.rewardId.startsWith('o1-')) continue;
        expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
      }
    }
    const results = await Promise.all([
      a.producer.enqueueRewards(first, { batchId: 'o1' }),
      b.producer.enqueueRewards(second, { batchId: 'o2' }),
      a.producer.enqueueRewards(third, { batchId: 'o3' }),
      b.producer.enqueueRewards(first, { batchId: 'o1' }),
    ]);
    expect(results.filter((r) => r.batchId === 'o1' && r.created)).toHaveLength(1);
    const again = await b.producer.enqueueRewards(first, { batchId: 'o1' });
    expect(again).toMatchObject({ batchId: 'o1', total: 1200, created: false });

    // withdrawals race with the batches on the same users (only once a user has money: 1 unit, 60 times).
    // The default lock policy gives up after about half a second; a busy user's withdrawal (LockBusyError) has
    // applied nothing and is retried with the same operation id, as a client would.
    const debits = new Map<string, bigint>();
    let busy = 0;
    for (let n = 0; n < 60; n += 1) {
      const uid = `o-u${(n * 37) % users}`;
      await new Promise((resolve) => setTimeout(resolve, 10));
      let outcome = 'LockBusyError';
      for (let attempt = 0; outcome === 'LockBusyError' && attempt < 200; attempt += 1) {
        outcome = await b.wallet.withdrawBalance(uid, 1n, { operationId: `o-w${n}` }).then(
          () => 'applied',
          (error: Error) => error.name,
        );
        if (outcome === 'LockBusyError') busy += 1;
      }
      if (outcome === 'applied') debits.set(uid, (debits.get(uid) ?? 0n) + 1n);
      else expect(outcome).toBe('InsufficientFundsError');
    }
    if (busy > 0) console.log(`withdrawals retried after LockBusyError: ${busy}`);
    for (const [uid, amount] of debits) expected.set(uid, expected.get(uid)! - amount);

    const reports = await Promise.all(['o1', 'o2', 'o3'].map((id) => waitForBatchDone(env.pool, id)));
    expect(reports.map((r) => r.deadLettered)).toEqual([0, 0, 0]);
    expect(reports.map((r) => r.status)).toEqual(['completed', 'completed', 'completed']);
    expect(reports[1]).toMatchObject({ applied: 1200, duplicate: 0 });
    // o1 and o3 share 400 rewards and run at once: whichever applies a shared reward first owns it
    expect(reports[0]!.applied + reports[2]!.applied).toBe(2000);
    expect(reports[0]!.duplicate + reports[2]!.duplicate).toBe(400);
    expect(reports[0]!.applied + reports[0]!.duplicate).toBe(1200);
    expect(reports[2]!.applied + reports[2]!.duplicate).toBe(1200);
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    expect(await ledgerMismatches(env.pool)).toEqual([]);
    const { rows } = await env.pool.query(
      `select count(*)::int as n from ledger_entries where batch_id in ('o1','o2','o3')`,
    );
    expect(rows[0].n).toBe(3200);
  }, 180_000);

  it('refuses a batch with bad rows as a whole, naming every row, and records nothing', async () => {
    const windfall = await env.open();
    const error = await windfall.producer
      .enqueueRewards(
        [
          { rewardId: 'bad-1', uid: 'u', amount: 10 },
          { rewardId: 'bad-2', uid: 'u', amount: 0 },
          { rewardId: 'bad-3', uid: '', amount: '1.5' },
          { rewardId: 'bad-1', uid: 'v', amount: 10 },
          { rewardId: 'bad-5', uid: 'w', amount: 5, colour: 'red' },
        ],
        { batchId: 'bad-batch' },
      )
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BatchValidationError);
    expect((error as BatchValidationError).errors.map((e) => [e.row, e.field])).toEqual([
      [2, 'amount'],
      [3, 'uid'],
      [3, 'amount'],
      [4, 'rewardId'],
      [5, 'colour'],
    ]);
    expect(await getBatchReport(env.pool, 'bad-batch')).toBeNull();
    const { rows } = await env.pool.query(
      `select count(*)::int as n from reward_batch_items where batch_id = 'bad-batch'`,
    );
    expect(rows[0].n).toBe(0);
    const waiting = await windfall.queues.shard(shardOf('u', 8)).getJobCounts('waiting', 'delayed');
    expect(waiting['waiting']! + waiting['delayed']!).toBe(0);
  });

  it('refuses a rewardId repeated within one batch, naming both rows', async () => {
    const windfall = await env.open();
    const error = (await windfall.producer
      .enqueueRewards(
        [
          { rewardId: 'rep-1', uid: 'a', amount: 1 },
          { rewardId: 'rep-2', uid: 'a', amount: 1 },
          { rewardId: 'rep-1', uid: 'b', amount: 1 },
          { rewardId: 'rep-2', uid: 'a', amount: 1 },
        ],
        { batchId: 'repeats' },
      )
      .catch((e: unknown) => e)) as BatchValidationError;
    expect(error).toBeInstanceOf(BatchValidationError);
    expect(error.errors.map((e) => [e.row, e.reason])).toEqual([
      [3, 'repeats row 1 of this batch (a rewardId may appear once per batch)'],
      [4, 'repeats row 2 of this batch (a rewardId may appear once per batch)'],
    ]);
    expect(await getBatchReport(env.pool, 'repeats')).toBeNull();
  });

  it('waits for a lock held elsewhere for a few seconds, then credits the user', async () => {
    const windfall = await env.open();
    await windfall.createWorker().start();
    await env.redis.set(`${env.prefix}:lock:held-2s`, 'another-service', 'PX', 2500);
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'held-1', uid: 'held-2s', amount: 40 },
        { rewardId: 'held-2', uid: 'free-2s', amount: 60 },
      ],
      { batchId: 'held-batch' },
    );
    const report = await waitForBatchDone(env.pool, 'held-batch', 30_000);
    expect(report).toMatchObject({ applied: 2, deadLettered: 0 });
    expect((await balances(env.pool)).get('held-2s')).toBe(40n);
  });

  it('dead-letters only the user whose lock stays busy, applying the rest of the chunk', async () => {
    const windfall = await env.open({
      rewardLockPolicy: { name: 'reward', retries: 2, initialDelayMs: 20, factor: 1.5, ttlMs: 5000 },
      jobAttempts: 2,
      jobBackoffMs: 50,
    });
    await windfall.createWorker().start();
    await env.redis.set(`${env.prefix}:lock:stuck-user`, 'hung-process', 'PX', 60_000);
    const rows = [
      { rewardId: 'st-1', uid: 'stuck-user', amount: 5 },
      { rewardId: 'st-2', uid: 'stuck-user', amount: 6 },
      ...rewardRows(20, (n) => ({ rewardId: `st-ok-${n}`, uid: `ok-user-${n}`, amount: 10 })),
    ];
    await windfall.producer.enqueueRewards(rows, { batchId: 'stuck-batch' });
    const report = await waitForBatchDone(env.pool, 'stuck-batch', 30_000);
    expect(report).toMatchObject({ status: 'completed_with_failures', applied: 20, deadLettered: 2, pending: 0 });
    const entries = await listDeadLetters(env.pool, { batchId: 'stuck-batch' });
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ uid: 'stuck-user', reason: 'LOCK_BUSY', attempts: 2 });
    expect(entries[0]!.rewards.map((r) => r.rewardId).sort()).toEqual(['st-1', 'st-2']);
    expect(entries[0]!.error).toContain('hung-process');
    expect((await balances(env.pool)).get('stuck-user')).toBeUndefined();
    await env.redis.del(`${env.prefix}:lock:stuck-user`);
  });

  it('dead-letters a conflicting rewardId as CONFLICT without retrying, and applies the user’s other rewards', async () => {
    const windfall = await env.open({ jobAttempts: 3 });
    await windfall.createWorker().start();
    await windfall.wallet.addBalance('cf-owner', 10, { operationId: 'cf-used' });
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'cf-used', uid: 'cf-user', amount: 10 },
        { rewardId: 'cf-fresh', uid: 'cf-user', amount: 7 },
        { rewardId: 'cf-used-2', uid: 'cf-other', amount: 1 },
      ],
      { batchId: 'conflict-batch' },
    );
    const report = await waitForBatchDone(env.pool, 'conflict-batch');
    expect(report).toMatchObject({ applied: 2, duplicate: 0, deadLettered: 1, status: 'completed_with_failures' });
    const [entry] = await listDeadLetters(env.pool, { batchId: 'conflict-batch' });
    expect(entry).toMatchObject({ uid: 'cf-user', reason: 'CONFLICT', attempts: 1 });
    expect(entry!.error).toContain('cf-owner');
    const all = await balances(env.pool);
    expect(all.get('cf-user')).toBe(7n);
    expect(all.get('cf-owner')).toBe(10n);
  });
});
