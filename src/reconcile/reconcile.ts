import type pg from 'pg';
import { UNFINISHED_REPLAY_REWARDS_CTE } from './replay-progress.js';

/**
 * What a mismatch is about:
 * - `balance`: a wallet's balance differs from the sum of its ledger entries;
 * - `wallet_missing`: the ledger has entries for a user without a wallet row;
 * - `operation_repeated`: an operation id appears in the ledger more than once;
 * - `reward_unsettled`: a reward of a batch with no open work is neither applied, duplicate nor dead-lettered
 *   (with `--strict`, also a reward still in flight);
 * - `duplicate_without_entry`: a reward recorded as a duplicate has no matching ledger entry (someone removed or
 *   changed the entry it duplicated);
 * - `ledger_entry_unmatched`: a ledger entry names a reward batch that has no such reward (same id, user and amount).
 */
export type MismatchKind =
  | 'balance'
  | 'wallet_missing'
  | 'operation_repeated'
  | 'reward_unsettled'
  | 'duplicate_without_entry'
  | 'ledger_entry_unmatched';

/** One thing that does not add up. Money is a digit string; `expected` and `actual` say what should be and what is. */
export interface Mismatch {
  readonly kind: MismatchKind;
  readonly uid: string;
  readonly expected: string;
  readonly actual: string;
  readonly batchId?: string;
  readonly rewardId?: string;
  /** A sentence for people. */
  readonly detail: string;
}

/** A batch that still has rewards to settle. */
export interface PendingBatch {
  readonly batchId: string;
  /** Rewards neither applied, duplicate nor dead-lettered yet. */
  readonly pending: number;
  /** Chunks (shard jobs) not completed yet. */
  readonly openChunks: number;
  /** Rewards of dead-letter entries replayed but not settled yet (their replay job has not finished). */
  readonly replaying: number;
  readonly createdAt: string;
}

/** The answer of {@link reconcile}. */
export interface ReconcileReport {
  /** True when there is no mismatch (pending work in flight does not count unless `strict`). */
  readonly ok: boolean;
  readonly strict: boolean;
  readonly wallets: number;
  readonly ledgerEntries: number;
  readonly batches: number;
  readonly rewards: {
    readonly total: number;
    readonly applied: number;
    readonly duplicate: number;
    readonly deadLettered: number;
    /** Not settled when their batch was cancelled: never paid by it (settled for good). */
    readonly cancelled: number;
    /** Not settled yet, in batches that still have open work (or in a replay): not a mismatch unless `strict`. */
    readonly inFlight: number;
    /** Not settled, in batches with no open work: each is a `reward_unsettled` mismatch. */
    readonly unsettled: number;
  };
  readonly pendingBatches: readonly PendingBatch[];
  /** How many mismatches there are in all (`mismatches` lists at most `limit` of each kind). */
  readonly mismatchCount: number;
  readonly mismatches: readonly Mismatch[];
  /** True when some mismatches were left out of the list. */
  readonly truncated: boolean;
  /** Wall-clock seconds the checks took. */
  readonly seconds: number;
  /** Milliseconds of each check. */
  readonly timings: Readonly<Record<'balances' | 'operations' | 'rewards' | 'entries', number>>;
}

/** Options of {@link reconcile}. */
export interface ReconcileOptions {
  /**
   * Also count rewards still in flight (batches with open chunks, replays not finished) as mismatches. Use it
   * when no work should be running (after a drain, in tests). Default false.
   */
  readonly strict?: boolean;
  /** Most mismatches listed per kind (all are counted). Default 1000. */
  readonly limit?: number;
  /** Most pending batches listed. Default 100. */
  readonly pendingLimit?: number;
}

// Every check is one set-based statement: hash joins and aggregates over whole tables, no per-row round trips.
// They run in one REPEATABLE READ transaction, so they all see the same snapshot while workers keep writing.

/** Wallets whose balance is not the sum of their entries, and ledger users without a wallet row. */
const BALANCE_SQL = `
select coalesce(w.uid, l.uid) as uid, w.balance::text as balance, coalesce(l.total, 0)::text as ledger,
       (w.uid is null) as missing, count(*) over () as mismatches
from wallets w
full join (select uid, sum(amount) as total from ledger_entries group by uid) l on l.uid = w.uid
where w.uid is null or w.balance <> coalesce(l.total, 0)
order by 1
limit $1`;

/** Operation ids found more than once (the unique constraint forbids it: checked anyway). */
const REPEATED_SQL = `
select r.operation_id, r.times, r.mismatches,
       (select string_agg(distinct l.uid, ',') from ledger_entries l where l.operation_id = r.operation_id) as uids
from (
  select operation_id, count(*)::int as times, count(*) over () as mismatches
  from ledger_entries group by operation_id having count(*) > 1
  order by operation_id
  limit $1
) r`;

const TOTALS_SQL = `
select (select count(*) from wallets)::bigint as wallets,
       (select count(*) from ledger_entries)::bigint as entries,
       (select count(*) from reward_batches)::bigint as batches`;

/**
 * Classifies every reward of every batch against the ledger, the recorded duplicates and the dead-letter table:
 * applied (an entry with that id, user and amount written by this batch), duplicate (such an entry written by
 * another batch or call, recorded in reward_duplicates), dead-lettered (in an open or purged entry of this batch),
 * cancelled (none of these, in a batch that was cancelled: never paid by it), or unsettled. An unsettled reward is in flight when its batch has an open chunk or its replay has not finished
 * (replay-progress.ts: the watchdog re-adds exactly those replays whose job is lost); otherwise it is lost. A
 * recorded duplicate without its entry is always wrong.
 */
const REWARD_CLASSES_CTE = `
with dead as (
  select distinct d.batch_id, r.value->>'rewardId' as reward_id
  from dead_letters d cross join lateral jsonb_array_elements(d.rewards) as r(value)
  where d.state in ('open', 'purged')
),
${UNFINISHED_REPLAY_REWARDS_CTE()},
replaying as (
  select distinct batch_id, reward_id from unfinished_replay_rewards
),
open_chunks as (
  select batch_id, count(*)::int as chunks from reward_chunks where completed_at is null group by batch_id
),
classified as (
  select i.batch_id, i.uid, i.reward_id, i.amount,
         l.uid as l_uid, l.amount as l_amount, l.batch_id as l_batch,
         (dup.reward_id is not null) as recorded_duplicate,
         (rp.reward_id is not null) as replaying,
         (oc.batch_id is not null) as batch_open,
         case
           when l.uid = i.uid and l.amount = i.amount and l.batch_id = i.batch_id then 'applied'
           when l.uid = i.uid and l.amount = i.amount and dup.reward_id is not null then 'duplicate'
           when dl.reward_id is not null then 'dead_lettered'
           when dup.reward_id is not null then 'broken_duplicate'
           when cb.batch_id is not null then 'cancelled'
           when oc.batch_id is not null or rp.reward_id is not null then 'in_flight'
           else 'unsettled'
         end as class
  from reward_batch_items i
  left join ledger_entries l on l.operation_id = i.reward_id
  left join reward_duplicates dup on dup.batch_id = i.batch_id and dup.reward_id = i.reward_id
  left join dead dl on dl.batch_id = i.batch_id and dl.reward_id = i.reward_id
  left join replaying rp on rp.batch_id = i.batch_id and rp.reward_id = i.reward_id
  left join open_chunks oc on oc.batch_id = i.batch_id
  left join reward_batches cb on cb.batch_id = i.batch_id and cb.cancelled_at is not null
)`;

/** One row of counts per batch (summed for the totals). */
const REWARD_COUNTS_SQL = `${REWARD_CLASSES_CTE}
select c.batch_id,
       count(*)::bigint as total,
       count(*) filter (where class = 'applied')::bigint as applied,
       count(*) filter (where class = 'duplicate')::bigint as duplicate,
       count(*) filter (where class = 'dead_lettered')::bigint as dead_lettered,
       count(*) filter (where class = 'cancelled')::bigint as cancelled,
       count(*) filter (where class = 'in_flight')::bigint as in_flight,
       count(*) filter (where class = 'in_flight' and replaying)::bigint as replaying,
       count(*) filter (where class = 'unsettled')::bigint as unsettled,
       count(*) filter (where class = 'broken_duplicate')::bigint as broken_duplicate
from classified c
group by c.batch_id`;

/** The rewards behind the problem counts, at most $2 of each class in $1. */
const REWARD_PROBLEMS_SQL = `${REWARD_CLASSES_CTE}
select * from (
  select c.*, row_number() over (partition by class order by batch_id, uid, reward_id) as n
  from classified c where class = any($1::text[])
) ranked where n <= $2
order by class, batch_id, uid, reward_id`;

const PENDING_BATCHES_SQL = `
select b.batch_id, b.created_at, coalesce(oc.chunks, 0)::int as open_chunks
from reward_batches b
left join (select batch_id, count(*) as chunks from reward_chunks where completed_at is null group by batch_id) oc on oc.batch_id = b.batch_id
where b.batch_id = any($1::text[])`;

/**
 * Ledger entries that name a reward batch but match none of its rewards (id, user and amount). A revert's debit
 * (`revert:<rewardId>`, kind `debit`) matches the reward it takes back, with the opposite amount; the reward must
 * have been applied by that batch.
 */
const UNMATCHED_ENTRIES_SQL = `
with entries as (
  select l.uid, l.operation_id, l.amount, l.batch_id,
         (l.kind = 'debit' and l.operation_id like 'revert:%') as is_revert,
         case when l.kind = 'debit' and l.operation_id like 'revert:%' then substr(l.operation_id, 8) else l.operation_id end as reward_id
  from ledger_entries l where l.batch_id is not null
)
select e.uid, e.operation_id, e.amount::text as amount, e.batch_id, count(*) over () as mismatches,
       i.uid as item_uid, (case when e.is_revert then -i.amount else i.amount end)::text as item_amount
from entries e
left join reward_batch_items i on i.batch_id = e.batch_id and i.reward_id = e.reward_id
where i.reward_id is null or i.uid <> e.uid or i.amount <> (case when e.is_revert then -e.amount else e.amount end)
   or (e.is_revert and not exists (
         select 1 from ledger_entries r where r.operation_id = e.reward_id and r.batch_id = e.batch_id and r.kind = 'reward'))
order by e.uid, e.operation_id
limit $1`;

interface ClassRow {
  class: string;
  batch_id: string;
  uid: string;
  reward_id: string;
  amount: bigint;
  l_uid: string | null;
  l_amount: bigint | null;
  l_batch: string | null;
  recorded_duplicate: boolean;
}

const num = (value: unknown): number => Number(value ?? 0);
const text = (value: unknown): string => String(value);

function describeExisting(row: ClassRow): string {
  if (row.l_uid === null) return 'no ledger entry';
  const parts = [
    `ledger entry ${JSON.stringify(row.reward_id)} credits ${row.l_amount} to ${JSON.stringify(row.l_uid)}`,
  ];
  parts.push(row.l_batch ? `(batch ${JSON.stringify(row.l_batch)})` : '(not a batch)');
  return parts.join(' ');
}

function rewardMismatch(row: ClassRow): Mismatch {
  const expected = `${row.amount} applied, duplicate or dead-lettered`;
  const base = { uid: row.uid, batchId: row.batch_id, rewardId: row.reward_id, expected };
  if (row.class === 'broken_duplicate') {
    return {
      ...base,
      kind: 'duplicate_without_entry',
      expected: `ledger entry ${JSON.stringify(row.reward_id)} of ${row.amount} for ${JSON.stringify(row.uid)}`,
      actual: describeExisting(row),
      detail: `reward ${JSON.stringify(row.reward_id)} of batch ${JSON.stringify(row.batch_id)} is recorded as a duplicate, but the ledger does not hold the entry it duplicates`,
    };
  }
  const sameEffect = row.l_uid === row.uid && row.l_amount === row.amount;
  const why =
    row.l_uid === null
      ? 'it has no ledger entry and no dead-letter entry'
      : sameEffect
        ? 'the ledger holds it from another batch or call, but it was never recorded as a duplicate of this batch'
        : 'its id is used in the ledger for another user or amount, and it was not dead-lettered as a conflict';
  return {
    ...base,
    kind: 'reward_unsettled',
    actual: row.class === 'in_flight' ? `pending (${describeExisting(row)})` : `unsettled (${describeExisting(row)})`,
    detail:
      row.class === 'in_flight'
        ? `reward ${JSON.stringify(row.reward_id)} of batch ${JSON.stringify(row.batch_id)} is still pending (strict mode)`
        : `reward ${JSON.stringify(row.reward_id)} of batch ${JSON.stringify(row.batch_id)} is not settled although the batch has no open work: ${why}`,
  };
}

/**
 * Checks the books, read-only, in one snapshot:
 * 1. every wallet's balance equals the sum of its ledger entries, and every user in the ledger has a wallet;
 * 2. no operation id appears in the ledger twice;
 * 3. every reward of every batch is applied (an entry with its id, user and amount), a recorded duplicate, or in
 *    the dead-letter table (open or purged); a reward not settled yet is "in flight" while its batch has an open
 *    chunk or it is being replayed — reported in `pendingBatches`, a mismatch only with `strict`;
 * 4. every ledger entry that names a reward batch is one of that batch's rewards.
 * Each check is one set-based statement (hash joins and aggregates), fast on millions of entries.
 */
export async function reconcile(pool: pg.Pool, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  const strict = options.strict ?? false;
  const limit = options.limit ?? 1000;
  const started = performance.now();
  const client = await pool.connect();
  let failed: Error | undefined;
  try {
    await client.query('begin isolation level repeatable read read only');
    // Whole-table comparisons: hash joins are right whatever the statistics say (a fresh or never-analyzed table
    // can make the planner pick nested loops, quadratic here), with room to keep the hashes in memory.
    await client.query(`set local enable_nestloop = off`);
    await client.query(`set local enable_mergejoin = off`);
    await client.query(`set local work_mem = '128MB'`);
    // The nested-loop penalty inflates cost estimates past the JIT thresholds: compiling would cost more than it saves.
    await client.query(`set local jit = off`);
    const mismatches: Mismatch[] = [];
    let mismatchCount = 0;
    let truncated = false;
    const timings = { balances: 0, operations: 0, rewards: 0, entries: 0 };
    let mark = performance.now();
    const lap = (check: keyof typeof timings): void => {
      const now = performance.now();
      timings[check] = Math.round(now - mark);
      mark = now;
    };
    const counted = (listed: number, total: number): void => {
      mismatchCount += total;
      if (total > listed) truncated = true;
    };

    const totals = (await client.query(TOTALS_SQL)).rows[0] as { wallets: bigint; entries: bigint; batches: bigint };

    mark = performance.now();
    const balances = await client.query<{
      uid: string;
      balance: string | null;
      ledger: string;
      missing: boolean;
      mismatches: string;
    }>(BALANCE_SQL, [limit]);
    counted(balances.rows.length, num(balances.rows[0]?.mismatches));
    for (const row of balances.rows) {
      mismatches.push(
        row.missing
          ? {
              kind: 'wallet_missing',
              uid: row.uid,
              expected: row.ledger,
              actual: 'no wallet',
              detail: `the ledger holds entries summing to ${row.ledger} for ${JSON.stringify(row.uid)}, who has no wallet row`,
            }
          : {
              kind: 'balance',
              uid: row.uid,
              expected: row.ledger,
              actual: text(row.balance),
              detail: `wallet ${JSON.stringify(row.uid)} has balance ${row.balance}; its ledger entries sum to ${row.ledger}`,
            },
      );
    }

    lap('balances');
    // streamed in index order over the unique index (no hash table of every id)
    await client.query(`set local enable_hashagg = off`);
    const repeated = await client.query<{ operation_id: string; times: number; uids: string; mismatches: string }>(
      REPEATED_SQL,
      [limit],
    );
    await client.query(`set local enable_hashagg = on`);
    counted(repeated.rows.length, num(repeated.rows[0]?.mismatches));
    for (const row of repeated.rows) {
      mismatches.push({
        kind: 'operation_repeated',
        uid: row.uids,
        expected: '1',
        actual: String(row.times),
        rewardId: row.operation_id,
        detail: `operation ${JSON.stringify(row.operation_id)} is in the ledger ${row.times} times`,
      });
    }

    lap('operations');
    // few groups (one per batch): a hash aggregate, not a sort of every reward
    await client.query(`set local enable_sort = off`);
    const counts = await client.query<Record<string, unknown>>(REWARD_COUNTS_SQL);
    await client.query(`set local enable_sort = on`);
    const perBatch = counts.rows;
    const sum = (column: string): number => perBatch.reduce((acc, row) => acc + num(row[column]), 0);
    const problemClasses = ['broken_duplicate', 'unsettled', ...(strict ? ['in_flight'] : [])];
    const problemTotal = perBatch.reduce(
      (sum, row) => sum + num(row['broken_duplicate']) + num(row['unsettled']) + (strict ? num(row['in_flight']) : 0),
      0,
    );
    if (problemTotal > 0) {
      const problems = await client.query<ClassRow>(REWARD_PROBLEMS_SQL, [problemClasses, limit]);
      counted(problems.rows.length, problemTotal);
      for (const row of problems.rows) mismatches.push(rewardMismatch(row));
    }

    lap('rewards');
    const unmatched = await client.query<{
      uid: string;
      operation_id: string;
      amount: string;
      batch_id: string;
      mismatches: string;
      item_uid: string | null;
      item_amount: string | null;
    }>(UNMATCHED_ENTRIES_SQL, [limit]);
    counted(unmatched.rows.length, num(unmatched.rows[0]?.mismatches));
    for (const row of unmatched.rows) {
      mismatches.push({
        kind: 'ledger_entry_unmatched',
        uid: row.uid,
        expected: row.item_uid === null ? 'no entry' : `${row.item_amount} for ${JSON.stringify(row.item_uid)}`,
        actual: row.amount,
        batchId: row.batch_id,
        rewardId: row.operation_id,
        detail:
          row.item_uid === null
            ? `ledger entry ${JSON.stringify(row.operation_id)} names batch ${JSON.stringify(row.batch_id)}, which has no such reward`
            : `ledger entry ${JSON.stringify(row.operation_id)} credits ${row.amount} to ${JSON.stringify(row.uid)}; batch ${JSON.stringify(row.batch_id)} has it as ${row.item_amount} for ${JSON.stringify(row.item_uid)}`,
      });
    }

    lap('entries');
    const pendingIds = perBatch.filter((row) => num(row['in_flight']) > 0).map((row) => text(row['batch_id']));
    const pendingBatches: PendingBatch[] = [];
    if (pendingIds.length > 0) {
      const info = await client.query<{ batch_id: string; created_at: Date; open_chunks: number }>(
        PENDING_BATCHES_SQL,
        [pendingIds],
      );
      const byId = new Map(info.rows.map((row) => [row.batch_id, row]));
      for (const row of perBatch) {
        if (num(row['in_flight']) === 0) continue;
        const batchId = text(row['batch_id']);
        const batch = byId.get(batchId);
        pendingBatches.push({
          batchId,
          pending: num(row['in_flight']),
          openChunks: batch?.open_chunks ?? 0,
          replaying: num(row['replaying']),
          createdAt: batch ? batch.created_at.toISOString() : '',
        });
      }
      pendingBatches.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.batchId.localeCompare(b.batchId));
    }
    await client.query('commit');

    return {
      ok: mismatchCount === 0,
      strict,
      wallets: num(totals.wallets),
      ledgerEntries: num(totals.entries),
      batches: num(totals.batches),
      rewards: {
        total: sum('total'),
        applied: sum('applied'),
        duplicate: sum('duplicate'),
        deadLettered: sum('dead_lettered'),
        cancelled: sum('cancelled'),
        inFlight: sum('in_flight'),
        unsettled: sum('unsettled') + sum('broken_duplicate'),
      },
      pendingBatches: pendingBatches.slice(0, options.pendingLimit ?? 100),
      mismatchCount,
      mismatches,
      truncated,
      seconds: Math.round(performance.now() - started) / 1000,
      timings,
    };
  } catch (error) {
    failed = error as Error;
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release(failed);
  }
}
