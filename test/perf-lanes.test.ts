import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { StatementLanes } from '../src/worker/statement-lanes.js';
import { getBatchReport } from '../src/batch/batch-status.js';
import { listDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { balances, ledgerMismatches, rewardRows, waitForBatchDone } from './support/batches.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

describe('pipelined statement lanes (the worker’s user statements)', () => {
  it('keeps each statement its own transaction: an error fails only its statement, the ones queued behind it commit', async () => {
    const pool = new pg.Pool({ connectionString: env.databaseUrl, max: 1 });
    const lanes = StatementLanes.forPool(pool, { lanes: 1, depth: 4 });
    try {
      await env.pool.query('create table lane_probe (id int primary key)');
      const insert = 'insert into lane_probe (id) values ($1::int) returning id';
      const results = await Promise.allSettled([1, 2, 2, 3, 4].map((id) => lanes.run('lane_probe_insert', insert, [String(id)])));
      expect(results.map((r) => (r.status === 'fulfilled' ? r.value[0]![0] : (r.reason as { code: string }).code))).toEqual(['1', '2', '23505', '3', '4']);
      const failure = (results[2] as PromiseRejectedResult).reason as pg.DatabaseError;
      expect(failure).toBeInstanceOf(pg.DatabaseError);
      expect(failure).toMatchObject({ code: '23505', constraint: 'lane_probe_pkey', table: 'lane_probe', severity: 'ERROR' });
      expect(failure.message).toContain('duplicate key');
      const { rows } = await env.pool.query('select array_agg(id order by id) as ids from lane_probe');
      expect(rows[0].ids).toEqual([1, 2, 3, 4]);
      // a statement that does not parse fails alone, and the name can be prepared again afterwards
      await expect(lanes.run('lane_probe_bad', 'select nope from lane_probe', [])).rejects.toMatchObject({ code: '42703' });
      expect(await lanes.run('lane_probe_bad', 'select count(*) from lane_probe', [])).toEqual([['4']]);
      // NULLs and multi-byte text round-trip
      expect(await lanes.run('lane_probe_echo', 'select $1::text, $2::text', [null, '活动奖励 😀'])).toEqual([[null, '活动奖励 😀']]);
    } finally {
      await lanes.close();
      await pool.end();
    }
  });

  it('a user whose statement fails (balance overflow) is dead-lettered INVALID; the users pipelined with it are applied', async () => {
    const windfall = await env.open({ concurrency: 2 });
    // a wallet close to the bigint limit (written directly: one operation is at most 2^53 - 1)
    await env.pool.query(`insert into ledger_entries (uid, operation_id, amount, kind) values ('lane-rich', 'lane-rich-opening', 9223372036854775000, 'credit')`);
    await env.pool.query(`insert into wallets (uid, balance) values ('lane-rich', 9223372036854775000)`);
    await windfall.createWorker().start();
    const rows = [
      { rewardId: 'lane-overflow', uid: 'lane-rich', amount: 1000 },
      ...rewardRows(40, (n) => ({ rewardId: `lane-ok-${n}`, uid: `lane-u${n}`, amount: 1 + n })),
    ];
    await windfall.producer.enqueueRewards(rows, { batchId: 'lane-batch' });
    const report = await waitForBatchDone(env.pool, 'lane-batch', 30_000);
    expect(report).toMatchObject({ applied: 40, deadLettered: 1, status: 'completed_with_failures' });
    const [entry] = await listDeadLetters(env.pool, { batchId: 'lane-batch' });
    expect(entry).toMatchObject({ uid: 'lane-rich', reason: 'INVALID' });
    expect((await balances(env.pool)).get('lane-rich')).toBe(9223372036854775000n);
    expect(await ledgerMismatches(env.pool)).toEqual([]);
  });

  it('survives its connections being terminated mid-batch: statements are retried, each reward credited once', async () => {
    const windfall = await env.open({ concurrency: 4, chunkSize: 100 });
    await windfall.createWorker().start();
    const rows = rewardRows(4000, (n) => ({ rewardId: `kill-lane-${n}`, uid: `kill-lane-u${n % 1000}`, amount: 1 + (n % 9) }));
    const expected = new Map<string, bigint>();
    for (const row of rows) expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
    await windfall.producer.enqueueRewards(rows, { batchId: 'kill-lane' });
    for (let round = 0; round < 3; round += 1) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      await env.pool.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and application_name = 'windfall' and pid <> pg_backend_pid() and query like '%ledger_entries%'`,
      );
    }
    const report = await waitForBatchDone(env.pool, 'kill-lane', 60_000);
    expect(report).toMatchObject({ applied: 4000, deadLettered: 0 });
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    expect(await ledgerMismatches(env.pool)).toEqual([]);
    expect((await getBatchReport(env.pool, 'kill-lane'))?.status).toBe('completed');
  });
});
