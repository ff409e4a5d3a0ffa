/*
 * The worker's SQL. A group of locked users is settled by ONE statement (one implicit transaction): it reads the
 * users' rewards where they already are (the staged batch rows of a chunk, or a dead-letter entry being replayed), so
 * no reward crosses Node; inserts them into the ledger in rewardId order ("C" collation: two statements never take the
 * same ids in opposite orders) skipping ids already there; adds what was inserted to each wallet, wallets in uid
 * order; records the rewards found applied by another batch as duplicates of this one; and answers, per user, how
 * many were applied, already applied (by this batch, an earlier run) or duplicate, and each conflicting reward. Each
 * user's rewards are all in that transaction: never split, never half-applied.
 */

/**
 * The input of a chunk group: `$1` batch ids, `$2` shards, `$3` uids (one element per user), and the rewards
 * already handed to the dead-letter queue by their chunks, left out: `$4` their batch ids, `$5` their rewardIds.
 */
const CHUNK_INPUT = `
  select i.batch_id, i.uid, i.reward_id, i.amount, i.description
  from unnest($1::text[], $2::int[], $3::text[]) as g(batch_id, shard, uid)
  join reward_batch_items i on i.batch_id = g.batch_id and i.shard = g.shard and i.uid = g.uid
  where not exists (
    select 1 from unnest($4::text[], $5::text[]) as e(batch_id, reward_id)
    where e.batch_id = i.batch_id and e.reward_id = i.reward_id
  )`;

/**
 * The input of a replay group: the rewards of dead-letter entries `$1` (ids), less those a replay of the same entry
 * has already handed to a new entry (a conflict found by an earlier run of the replay).
 */
const REPLAY_INPUT = `
  select d.batch_id, r.uid, r."rewardId" as reward_id, r.amount::int8 as amount, r.description
  from dead_letters d
  cross join lateral jsonb_to_recordset(d.rewards) as r("rewardId" text, uid text, amount text, description text)
  where d.id = any($1::bigint[])
    and not exists (
      select 1 from dead_letters c
      where c.replay_of = d.id and c.rewards @> jsonb_build_array(jsonb_build_object('rewardId', r."rewardId"))
    )`;

/** The statement that settles a group, given its input (see the module comment). Answers {@link SettlementRow}s. */
function settleStatement(input: string): string {
  return `
with input as materialized (${input}
),
inserted as (
  insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description)
  select uid, reward_id, amount, 'reward', batch_id, description from input
  order by reward_id collate "C"
  on conflict (operation_id) do nothing
  returning uid, operation_id, amount
),
credited as (
  insert into wallets as w (uid, balance)
  select uid, sum(amount) from inserted group by uid order by uid collate "C"
  on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now()
),
skipped as (
  select x.batch_id, x.uid, x.reward_id, x.amount, l.uid as l_uid, l.amount as l_amount, l.batch_id as l_batch,
         case when l.operation_id is null then 'unknown'
              when l.uid = x.uid and l.amount = x.amount then case when l.batch_id = x.batch_id then 'already' else 'duplicate' end
              else 'conflict' end as outcome
  from input x
  left join ledger_entries l on l.operation_id = x.reward_id
  where not exists (select 1 from inserted n where n.operation_id = x.reward_id)
),
recorded as (
  insert into reward_duplicates (batch_id, reward_id)
  select batch_id, reward_id from skipped where outcome = 'duplicate'
  on conflict do nothing
)
select 'applied' as outcome, uid, count(*)::int as n, null::text as reward_id, null::text as amount,
       null::text as l_uid, null::text as l_amount, null::text as l_batch
from inserted group by uid
union all
select outcome, uid, count(*)::int, null, null, null, null, null
from skipped where outcome in ('already', 'duplicate') group by outcome, uid
union all
select outcome, uid, 1, reward_id, amount::text, l_uid, l_amount::text, l_batch
from skipped where outcome in ('conflict', 'unknown')`;
}

/** Settles a group of chunk users. Parameters: see {@link CHUNK_INPUT}. */
export const SETTLE_CHUNK_USERS_SQL = settleStatement(CHUNK_INPUT);
/** Settles a group of replayed dead-letter entries. Parameters: see {@link REPLAY_INPUT}. */
export const SETTLE_REPLAYS_SQL = settleStatement(REPLAY_INPUT);

/** One row of a settlement statement's answer. */
export interface SettlementRow {
  /**
   * `applied` / `already` / `duplicate`: `n` rewards of the user (inserted now / applied earlier by the same batch /
   * applied earlier by another batch or call, with the same user and amount). `conflict`: one reward whose id the
   * ledger holds with another user or amount (`l_*`). `unknown`: one reward skipped because a transaction that
   * committed while the statement ran wrote its id: look it up again.
   */
  readonly outcome: 'applied' | 'already' | 'duplicate' | 'conflict' | 'unknown';
  readonly uid: string;
  readonly n: number;
  readonly reward_id: string | null;
  readonly amount: string | null;
  readonly l_uid: string | null;
  readonly l_amount: string | null;
  readonly l_batch: string | null;
}

/** What the ledger holds for rewardIds `$1` (a fresh snapshot: for `unknown` rows). */
export const FIND_LEDGER_ENTRIES_SQL = `
select operation_id, uid, amount::text as amount, batch_id from ledger_entries where operation_id = any($1::text[])`;

/** Records duplicates found after the statement: `$1` batch ids, `$2` rewardIds. */
export const RECORD_DUPLICATES_SQL = `
insert into reward_duplicates (batch_id, reward_id)
select * from unnest($1::text[], $2::text[]) on conflict do nothing`;

/**
 * The users of chunk `$2` of batch `$1` with the number of their rewards (and marks the batch processing). Rewards
 * already in the chunk's dead-letter entries are counted too: see {@link CHUNK_DEAD_LETTERED_SQL}.
 */
export const CHUNK_USERS_SQL = `
with started as (
  update reward_batches set status = 'processing', updated_at = now() where batch_id = $1 and status = 'pending'
)
select c.shard, i.uid, count(*)::int as rewards
from reward_chunks c
join reward_batch_items i on i.batch_id = c.batch_id and i.shard = c.shard and i.uid between c.first_uid and c.last_uid
where c.batch_id = $1 and c.chunk_no = $2
group by c.shard, i.uid
order by i.uid`;

/** The rewards of chunk `$2` of batch `$1` that its dead-letter entries hold (the queue owns them now). */
export const CHUNK_DEAD_LETTERED_SQL = `
select d.uid, r.value->>'rewardId' as reward_id
from dead_letters d cross join jsonb_array_elements(d.rewards) as r(value)
where d.batch_id = $1 and d.chunk_no = $2`;
