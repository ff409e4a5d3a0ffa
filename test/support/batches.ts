import type pg from 'pg';
import { getBatchReport, type BatchReport } from '../../src/status/batch-status.js';
import { queryRetrying } from '../../bench/soak/fault-kit.js';

/** Polls until nothing of the batch is pending, or fails after `timeoutMs` with the last report. */
export async function waitForBatchDone(pool: pg.Pool, batchId: string, timeoutMs = 60_000): Promise<BatchReport> {
  const deadline = Date.now() + timeoutMs;
  let last: BatchReport | null = null;
  while (Date.now() < deadline) {
    last = await getBatchReport(pool, batchId);
    if (last && last.pending === 0) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`batch ${batchId} not done after ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

/** Every wallet's balance, as a map. */
export async function balances(pool: pg.Pool): Promise<Map<string, bigint>> {
  const { rows } = await pool.query<{ uid: string; balance: string }>('select uid, balance::text from wallets');
  return new Map(rows.map((row) => [row.uid, BigInt(row.balance)]));
}

/** Wallets whose balance differs from the sum of their ledger entries (should be none). */
export async function ledgerMismatches(pool: pg.Pool): Promise<{ uid: string; balance: string; ledger: string }[]> {
  const { rows } = await pool.query<{ uid: string; balance: string; ledger: string }>(
    `select w.uid, w.balance::text, coalesce(l.total, 0)::text as ledger
     from wallets w full join (select uid, sum(amount) as total from ledger_entries group by uid) l using (uid)
     where coalesce(w.balance, 0) <> coalesce(l.total, 0)`,
  );
  return rows;
}

/** Rewards as plain objects for the producer. */
export function rewardRows(
  count: number,
  make: (n: number) => { rewardId: string; uid: string; amount: number | string; description?: string },
) {
  return Array.from({ length: count }, (_, n) => make(n));
}

/**
 * Rewards of a batch settled so far: applied by it, or dead-lettered. Retries after connection errors (fault tests
 * terminate backends, the pool's included).
 */
export async function settledRewards(pool: pg.Pool, batchId: string): Promise<number> {
  const { rows } = await queryRetrying<{ n: number }>(
    pool,
    `select (select count(*) from ledger_entries where batch_id = $1)::int
          + (select coalesce(sum(reward_count), 0) from dead_letters where batch_id = $1)::int as n`,
    [batchId],
  );
  return rows[0]!.n;
}
