/*
 * The worker's SQL. Sets of rewards to leave out are written as uncorrelated `not in (subquery)`, which PostgreSQL
 * runs as one hashed lookup table: a correlated test per reward would grow with the square of a user's rewards.
 *
 * A group of locked users is settled by ONE statement (one implicit transaction): it reads the
 * users' rewards where they already are (the staged batch rows of a chunk, or a dead-letter entry being replayed), so
 * no reward crosses Node; inserts them into the ledger in rewardId order ("C" collation: two statements never take the
 * same ids in opposite orders) skipping ids already there; adds what was inserted to each wallet, wallets in uid
 * order; and answers, per user, how many rewards it read and how many it inserted. Each user's rewards are all in that
 * transaction: never split, never half-applied.
 *
 * Ids already in the ledger are skipped by an anti-join, not by `on conflict do nothing`: a speculative insertion costs
 * a second index probe and WAL record per row (the statement settles ~20 % more users per second without it). Two
 * users of a group with the same rewardId (two batches that disagree) insert it once (`distinct on`; the other is
 * judged a conflict). The one case left is a rewardId written by a concurrent transaction after the statement's
 * snapshot: the insert then fails with a unique violation once that transaction commits, and the group is simply run
 * again (see GroupSettlement), when the anti-join sees the row. The anti-join is a lateral probe with `limit 1`, which
 * PostgreSQL cannot turn into a hash join: a plain `not exists` was planned as a scan of the whole ledger when it
 * over-estimated the input (replays: `jsonb_to_recordset` is guessed at 100 rows per entry; 400 replays on a
 * 2 M-row ledger took 2 s instead of 36 ms).
 *
 * Only when a user's rewards were not all inserted (a re-run, a duplicate, a conflict) does a second statement judge
 * the others against the ledger (a fresh snapshot, after the first committed: it sees whatever a concurrent
 * transaction wrote) and record the duplicates. The common case stays one statement, and neither statement joins two
 * large intermediate results (no plan that is quadratic in a user's rewards).
 */

/**
 * The input of a chunk group: `$1` batch ids, `$2` shards, `$3` uids (one element per user), and the rewards
 * already handed to the dead-letter queue by their chunks, left out: `$4` their batch ids, `$5` their rewardIds.
 */
const CHUNK_INPUT = `
  select i.batch_id, i.uid, i.reward_id, i.amount, i.description
  from unnest($1::text[], $2::int[], $3::text[]) as g(batch_id, shard, uid)
  join reward_batch_items i on i.batch_id = g.batch_id and i.shard = g.shard and i.uid = g.uid
  where (i.batch_id, i.reward_id) not in (select * from unnest($4::text[], $5::text[]))`;

/**
 * The input of a replay group: the rewards of dead-letter entries `$1` (ids), less those a replay of the same entry
 * has already handed to a new entry (a conflict found by an earlier run of the replay).
 */
const REPLAY_INPUT = `
  select d.batch_id, r.uid, r."rewardId" as reward_id, r.amount::int8 as amount, r.description
  from dead_letters d
  cross join lateral jsonb_to_recordset(d.rewards) as r("rewardId" text, uid text, amount text, description text)
  where d.id = any($1::bigint[])
    and (d.id, r."rewardId") not in (
      select c.replay_of, c_reward.value->>'rewardId'
      from dead_letters c cross join lateral jsonb_array_elements(c.rewards) as c_reward(value)
      where c.replay_of = any($1::bigint[])
    )`;

/** The statement that settles a group, given its input (see the module comment). Answers {@link SettlementRow}s. */
function settleStatement(input: string): string {
  return `
with input as materialized (${input}
),
inserted as (
  insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description)
  select distinct on (x.reward_id collate "C") x.uid, x.reward_id, x.amount, 'reward', x.batch_id, x.description
  from input x
  left join lateral (select true as found from ledger_entries l where l.operation_id = x.reward_id limit 1) e on true
  where e.found is null
  order by x.reward_id collate "C", x.uid collate "C"
  returning uid, amount
),
credited as (
  insert into wallets as w (uid, balance)
  select uid, sum(amount) from inserted group by uid order by uid collate "C"
  on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now()
),
read as (select uid, count(*)::int as n from input group by uid),
written as (select uid, count(*)::int as n from inserted group by uid)
select r.uid, r.n as read, coalesce(w.n, 0) as inserted from read r left join written w on w.uid = r.uid`;
}

/** Settles a group of chunk users. Parameters: see {@link CHUNK_INPUT}. */
export const SETTLE_CHUNK_USERS_SQL = settleStatement(CHUNK_INPUT);
/** Settles a group of replayed dead-letter entries. Parameters: see {@link REPLAY_INPUT}. */
export const SETTLE_REPLAYS_SQL = settleStatement(REPLAY_INPUT);

/** One row of a settlement statement's answer: a user, the rewards read for it and those inserted now. */
export interface SettlementRow {
  readonly uid: string;
  readonly read: number;
  readonly inserted: number;
}

/**
 * Judges the rewards of the group's users (the same input, for the users given) that are in the ledger for another
 * batch or call, or with another user or amount: records the duplicates (same user and amount) as this batch's, and
 * answers {@link JudgedRow}s: per user, the rewards applied for this batch and the duplicates; each conflict.
 */
function judgeStatement(input: string): string {
  return `
with input as materialized (${input}
),
found as (
  select x.batch_id, x.uid, x.reward_id, x.amount, l.uid as l_uid, l.amount as l_amount, l.batch_id as l_batch,
         case when l.uid = x.uid and l.amount = x.amount then
                case when l.batch_id = x.batch_id then 'applied' else 'duplicate' end
              else 'conflict' end as outcome
  from input x join ledger_entries l on l.operation_id = x.reward_id
),
recorded as (
  insert into reward_duplicates (batch_id, reward_id)
  select batch_id, reward_id from found where outcome = 'duplicate'
  on conflict do nothing
)
select outcome, uid, count(*)::int as n, null::text as reward_id, null::text as amount,
       null::text as l_uid, null::text as l_amount, null::text as l_batch
from found where outcome <> 'conflict' group by outcome, uid
union all
select outcome, uid, 1, reward_id, amount::text, l_uid, l_amount::text, l_batch from found where outcome = 'conflict'`;
}

/** Judges chunk users' rewards. Parameters: see {@link CHUNK_INPUT}. */
export const JUDGE_CHUNK_USERS_SQL = judgeStatement(CHUNK_INPUT);
/** Judges replayed entries' rewards. Parameters: see {@link REPLAY_INPUT}. */
export const JUDGE_REPLAYS_SQL = judgeStatement(REPLAY_INPUT);

/** One row of a judging statement's answer. */
export interface JudgedRow {
  /**
   * `applied` / `duplicate`: `n` rewards of the user (in the ledger for this batch / for another batch or call, same
   * user and amount). `conflict`: one reward whose id the ledger holds with another user or amount (`l_*`).
   */
  readonly outcome: 'applied' | 'duplicate' | 'conflict';
  readonly uid: string;
  readonly n: number;
  readonly reward_id: string | null;
  readonly amount: string | null;
  readonly l_uid: string | null;
  readonly l_amount: string | null;
  readonly l_batch: string | null;
}
