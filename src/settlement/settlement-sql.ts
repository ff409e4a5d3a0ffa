/*
 * The worker's SQL. Sets of rewards to leave out are written as `not exists`, which PostgreSQL runs as an anti-join
 * (hashed for a large set, spilling to disk rather than falling back to a test per reward): the statements are sent
 * unnamed (each planned with its own arrays' sizes) and run with the server's `work_mem`, so that they work through a
 * pooler in transaction mode (ADR 0014: no prepared statement, no session setting).
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

import { classifyExistingSql, type OperationOutcome } from '../ledger/ledger-operation.js';

/**
 * Sets the statement's own limits, transaction-local (`set_config(…, true)`: nothing outlives the statement's implicit
 * transaction, so nothing leaks to the next user of a pooled connection): `lock_timeout` bounds each wait for a row
 * another transaction holds (the server ends the statement even when the process that sent it froze), and
 * `idle_in_transaction_session_timeout` ends a session whose client stopped mid-protocol while the statement's locks
 * are held. Written as an uncorrelated sub-select: PostgreSQL runs it once, before the fence rows are read and locked.
 */
function statementLimits(lockTimeout: string, idleTimeout: string): string {
  return `(select set_config('lock_timeout', ${lockTimeout}, true) || set_config('idle_in_transaction_session_timeout', ${idleTimeout}, true)) is not null`;
}

/**
 * The fence of a chunk group (ADR 0013): the chunk rows of its users that still carry the fence their job attempt
 * claimed, locked `for share` until the statement commits. A fence moved on meanwhile (a later attempt's claim, the
 * dead-letter writer, a revert) either waits for this statement to commit, or — when it came first — is seen here
 * (PostgreSQL re-reads a row changed after the statement's snapshot before locking it) and leaves the chunk out: its
 * users read no reward and are answered `fenced`.
 * `$1` batch ids, `$2` chunk numbers, `$5` fences, one element per user; `$8` lock timeout, `$9` idle timeout (ms).
 */
const CHUNK_FENCE = `
  select c.batch_id, c.chunk_no
  from reward_chunks c
  where (c.batch_id, c.chunk_no, c.fence) in (select * from unnest($1::text[], $2::int[], $5::bigint[]))
    and ${statementLimits('$8', '$9')}
  for share of c`;

/**
 * The input of a chunk group, within its fence: `$1` batch ids, `$2` chunk numbers, `$3` shards, `$4` uids (one
 * element per user), and the rewards already handed to the dead-letter queue by their chunks, left out: `$6` their
 * batch ids, `$7` their rewardIds.
 */
const FENCED_CHUNK_INPUT = `
  select i.batch_id, i.uid, i.reward_id, i.amount, i.description
  from unnest($1::text[], $2::int[], $3::int[], $4::text[]) as g(batch_id, chunk_no, shard, uid)
  join fenced f on f.batch_id = g.batch_id and f.chunk_no = g.chunk_no
  join reward_batch_items i on i.batch_id = g.batch_id and i.shard = g.shard and i.uid = g.uid
  where not exists (
    select from unnest($6::text[], $7::text[]) as x(batch_id, reward_id)
    where x.batch_id = i.batch_id and x.reward_id = i.reward_id
  )`;

/** Each user of a chunk group, and whether its chunk's fence let it in. */
const CHUNK_USERS = `
  select g.uid, f.chunk_no is null as fenced
  from unnest($1::text[], $2::int[], $4::text[]) as g(batch_id, chunk_no, uid)
  left join fenced f on f.batch_id = g.batch_id and f.chunk_no = g.chunk_no`;

/**
 * The rewards that earlier runs of the replays of entries `$1` handed on to entries of their own (a conflict found by
 * a run): read once per statement (not once per reward), then left out by an anti-join.
 */
const HANDED_ON = `
    select c.replay_of, c_reward.value->>'rewardId' as reward_id
    from dead_letters c cross join lateral jsonb_array_elements(c.rewards) as c_reward(value)
    where c.replay_of = any($1::bigint[])`;

/**
 * The fence of a replay group: the entries still claimed (`replayed`) with the fence their replay attempt took,
 * locked `for share` (see {@link CHUNK_FENCE}). `$1` entry ids, `$2` fences; `$3` lock timeout, `$4` idle timeout.
 */
const REPLAY_FENCE = `
  select d.id
  from dead_letters d
  where (d.id, d.fence) in (select * from unnest($1::bigint[], $2::bigint[]))
    and d.state = 'replayed'
    and ${statementLimits('$3', '$4')}
  for share of d`;

/**
 * The input of a replay group, within its fence: the rewards of the entries, less those a replay of the same entry
 * has already handed to a new entry (a conflict found by an earlier run of the replay).
 */
const FENCED_REPLAY_INPUT = `
  with handed as materialized (${HANDED_ON})
  select d.batch_id, r.uid, r."rewardId" as reward_id, r.amount::int8 as amount, r.description
  from dead_letters d
  join fenced f on f.id = d.id
  cross join lateral jsonb_to_recordset(d.rewards) as r("rewardId" text, uid text, amount text, description text)
  where not exists (select from handed h where h.replay_of = d.id and h.reward_id = r."rewardId")`;

/** Each entry's user of a replay group, and whether its fence let it in. */
const REPLAY_USERS = `
  select d.uid, f.id is null as fenced
  from dead_letters d left join fenced f on f.id = d.id
  where d.id = any($1::bigint[])`;

/**
 * The input of a chunk group for judging (no fence: judging only reads the ledger and records duplicates): `$1` batch
 * ids, `$2` shards, `$3` uids, `$4`/`$5` the rewards left out (see {@link FENCED_CHUNK_INPUT}).
 */
const CHUNK_INPUT = `
  select i.batch_id, i.uid, i.reward_id, i.amount, i.description
  from unnest($1::text[], $2::int[], $3::text[]) as g(batch_id, shard, uid)
  join reward_batch_items i on i.batch_id = g.batch_id and i.shard = g.shard and i.uid = g.uid
  where not exists (
    select from unnest($4::text[], $5::text[]) as x(batch_id, reward_id)
    where x.batch_id = i.batch_id and x.reward_id = i.reward_id
  )`;

/** The input of a replay group for judging: the rewards of entries `$1` (see {@link FENCED_REPLAY_INPUT}). */
const REPLAY_INPUT = `
  with handed as materialized (${HANDED_ON})
  select d.batch_id, r.uid, r."rewardId" as reward_id, r.amount::int8 as amount, r.description
  from dead_letters d
  cross join lateral jsonb_to_recordset(d.rewards) as r("rewardId" text, uid text, amount text, description text)
  where d.id = any($1::bigint[])
    and not exists (select from handed h where h.replay_of = d.id and h.reward_id = r."rewardId")`;

/**
 * The statement that settles a group, given its fence, its input and its users (see the module comment). Answers
 * {@link SettlementRow}s. `marker` names the statement in `pg_stat_activity` (and for tests that count statements).
 */
function settleStatement(marker: string, fence: string, input: string, users: string): string {
  return `/* ${marker} */
with fenced as materialized (${fence}
),
input as materialized (${input}
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
select u.uid, coalesce(r.n, 0) as read, coalesce(w.n, 0) as inserted, u.fenced
from (${users}
) u
left join read r on r.uid = u.uid
left join written w on w.uid = u.uid`;
}

/** Marks the settlement statements: `pg_stat_activity.query` starts with it. */
export const SETTLEMENT_MARKER = 'windfall:settle';

/** Settles a group of chunk users. Parameters: see {@link CHUNK_FENCE} and {@link FENCED_CHUNK_INPUT}. */
export const SETTLE_CHUNK_USERS_SQL = settleStatement(
  `${SETTLEMENT_MARKER} chunk users`,
  CHUNK_FENCE,
  FENCED_CHUNK_INPUT,
  CHUNK_USERS,
);
/** Settles a group of replayed dead-letter entries. Parameters: see {@link REPLAY_FENCE}. */
export const SETTLE_REPLAYS_SQL = settleStatement(
  `${SETTLEMENT_MARKER} replays`,
  REPLAY_FENCE,
  FENCED_REPLAY_INPUT,
  REPLAY_USERS,
);

/**
 * One row of a settlement statement's answer: a user, the rewards read for it and those inserted now; `fenced` when
 * its chunk's (or entry's) fence had moved on: nothing of it was read or inserted.
 */
export interface SettlementRow {
  readonly uid: string;
  readonly read: number;
  readonly inserted: number;
  readonly fenced: boolean;
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
         ${classifyExistingSql('l', 'x')} as outcome
  from input x join ledger_entries l on l.operation_id = x.reward_id
),
recorded as (
  insert into reward_duplicates (batch_id, reward_id, amount)
  select batch_id, reward_id, amount from found where outcome = 'duplicate'
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
   * `already_applied` / `duplicate`: `n` rewards of the user (in the ledger for this batch / for another batch or call, same
   * user and amount). `conflict`: one reward whose id the ledger holds with another user or amount (`l_*`).
   */
  readonly outcome: Exclude<OperationOutcome, 'applied'>;
  readonly uid: string;
  readonly n: number;
  readonly reward_id: string | null;
  readonly amount: string | null;
  readonly l_uid: string | null;
  readonly l_amount: string | null;
  readonly l_batch: string | null;
}
