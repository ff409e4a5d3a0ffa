import type pg from 'pg';
import { beginDeciding, FENCE_WAIT_MS, passChunkFence, passEntryFence } from '../db/fences.js';
import { isSilentConnection } from '../db/silent-connections.js';
import type { DeadLetterReason } from '../db/schema.js';
import type { DeadLetterEntry, DeadLetterRow } from './dead-letter-store.js';
import { toEntry } from './dead-letter-store.js';

/** Rewards of a dead-letter entry as the mirror shows them: all of them up to 100, else the first 100. */
const RETURNING_ENTRY = `
returning id, batch_id, uid, shard, reward_count, reason, error, attempts, failed_at, state, chunk_no, replay_of, replayed_at,
  case when reward_count <= 100 then rewards
       else (select jsonb_agg(value) from jsonb_array_elements(rewards) with ordinality as t(value, n) where n <= 100) end as rewards`;

/** A reward as a dead-letter entry stores it (`description` only when there is one). */
const STORED_REWARD = `jsonb_strip_nulls(jsonb_build_object('rewardId', reward_id, 'uid', reward_uid, 'amount', amount::text, 'description', description))`;

/**
 * (Sets of rewards are tested with uncorrelated `in`/`not in (subquery)`, run as one hashed table in a transaction
 * with room for it — not a test per reward that grows with the entries' size.)
 *
 * Writes dead-letter entries of chunk users, building each entry's rewards from the staged rows: the user's rewards
 * of the chunk (or only `reward_ids`) that are not applied by the batch, not recorded as its duplicates and not in
 * another entry of the chunk. `$1`: JSON array of `{batch_id, chunk_no, shard, uid, reason, error, attempts,
 * reward_ids}`. An entry's key is its chunk, user, reason and set of rewards: a job that runs again writes nothing
 * twice, and nothing is swallowed. An entry with no reward left is not written.
 */
const RECORD_CHUNK_DEAD_LETTERS_SQL = `
with e as (
  select * from jsonb_to_recordset($1::jsonb)
    as e(batch_id text, chunk_no int, shard int, uid text, reason text, error text, attempts int, reward_ids text[])
),
picked as (
  select e.batch_id, e.chunk_no, e.shard, e.uid, e.reason, e.error, e.attempts,
         i.reward_id, i.uid as reward_uid, i.amount, i.description
  from e join reward_batch_items i on i.batch_id = e.batch_id and i.shard = e.shard and i.uid = e.uid
  where (e.reward_ids is null
         or (e.batch_id, e.uid, i.reward_id) in (select batch_id, uid, unnest(reward_ids) from e where reward_ids is not null))
    and not exists (select 1 from ledger_entries l where l.operation_id = i.reward_id and l.batch_id = i.batch_id)
    and not exists (select 1 from reward_duplicates r where r.batch_id = i.batch_id and r.reward_id = i.reward_id)
    and (i.batch_id, i.reward_id) not in (
      select d.batch_id, r.value->>'rewardId'
      from dead_letters d cross join lateral jsonb_array_elements(d.rewards) as r(value)
      where (d.batch_id, d.chunk_no, d.uid) in (select batch_id, chunk_no, uid from e)
    )
)
insert into dead_letters (source, batch_id, chunk_no, uid, shard, rewards, reward_count, amount, reason, error, attempts)
select jsonb_build_array('chunk', batch_id, chunk_no, uid, reason, md5(string_agg(reward_id, E'\\n' order by reward_id collate "C")))::text,
       batch_id, chunk_no, uid, shard,
       jsonb_agg(${STORED_REWARD} order by reward_id collate "C"),
       count(*)::int, sum(amount::numeric), reason, left(error, 2000), attempts
from picked
group by batch_id, chunk_no, uid, shard, reason, error, attempts
on conflict (source) do nothing${RETURNING_ENTRY}`;

/**
 * Writes dead-letter entries of replayed entries (`replay_of`), each holding the replayed entry's rewards (or only
 * `reward_ids`) that are not applied by the batch, not its duplicates and not in another entry of the same replay.
 * `$1`: JSON array of `{replay_of, reason, error, attempts, reward_ids}`.
 */
const RECORD_REPLAY_DEAD_LETTERS_SQL = `
with e as (
  select * from jsonb_to_recordset($1::jsonb) as e(replay_of bigint, reason text, error text, attempts int, reward_ids text[])
),
picked as (
  select e.replay_of, e.reason, e.error, e.attempts, d.batch_id, d.uid, d.shard,
         r."rewardId" as reward_id, r.uid as reward_uid, r.amount, r.description
  from e join dead_letters d on d.id = e.replay_of
  cross join lateral jsonb_to_recordset(d.rewards) as r("rewardId" text, uid text, amount text, description text)
  where (e.reward_ids is null
         or (e.replay_of, r."rewardId") in (select replay_of, unnest(reward_ids) from e where reward_ids is not null))
    and not exists (select 1 from ledger_entries l where l.operation_id = r."rewardId" and l.batch_id = d.batch_id)
    and not exists (select 1 from reward_duplicates x where x.batch_id = d.batch_id and x.reward_id = r."rewardId")
    and (d.id, r."rewardId") not in (
      select c.replay_of, c_reward.value->>'rewardId'
      from dead_letters c cross join lateral jsonb_array_elements(c.rewards) as c_reward(value)
      where c.replay_of in (select replay_of from e)
    )
)
insert into dead_letters (source, batch_id, chunk_no, replay_of, uid, shard, rewards, reward_count, amount, reason, error, attempts)
select jsonb_build_array('replay', replay_of::text, reason, md5(string_agg(reward_id, E'\\n' order by reward_id collate "C")))::text,
       batch_id, null, replay_of, uid, shard,
       jsonb_agg(${STORED_REWARD} order by reward_id collate "C"),
       count(*)::int, sum(amount::numeric), reason, left(error, 2000), attempts
from picked
group by replay_of, batch_id, uid, shard, reason, error, attempts
on conflict (source) do nothing${RETURNING_ENTRY}`;

/** A user whose rewards a chunk job hands to the dead-letter queue. */
export interface ChunkDeadLetter {
  readonly batchId: string;
  readonly chunkNo: number;
  readonly shard: number;
  readonly uid: string;
  readonly reason: DeadLetterReason;
  readonly error: string;
  readonly attempts: number;
  /** Only these rewards (conflicts); null: every reward of the user in the chunk not settled yet. */
  readonly rewardIds: readonly string[] | null;
}

/** A replayed entry whose rewards (or some of them) go back to the dead-letter queue as a new entry. */
export interface ReplayDeadLetter {
  readonly replayOf: string;
  readonly reason: DeadLetterReason;
  readonly error: string;
  readonly attempts: number;
  /** Only these rewards (conflicts); null: every reward of the replayed entry not settled yet. */
  readonly rewardIds: readonly string[] | null;
}

/** A written row; `rewards` holds at most the first 100 of `reward_count`. */
type WrittenRow = DeadLetterRow & { reward_count: number };

/** An entry as written; `rewards` holds at most the first 100 (see `rewardCount`). */
export type WrittenDeadLetter = DeadLetterEntry & { readonly rewardCount: number };

function written(row: WrittenRow): WrittenDeadLetter {
  return { ...toEntry(row), rewardCount: row.reward_count };
}

type Db = Pick<pg.Pool, 'connect'>;

/** The fence the writing attempt claimed: of its chunk, or of the entry it replays (ADR 0013). */
export type WriterFence =
  | { readonly kind: 'chunk'; readonly batchId: string; readonly chunkNo: number; readonly fence: string }
  | { readonly kind: 'replay'; readonly deadLetterId: string; readonly fence: string };

/**
 * Runs one writing statement behind the attempt's fence, in a transaction of its own: first the fence is moved on
 * (waiting for the chunk's or entry's statements still in flight, which then commit first and are seen by the
 * writing statement; statements sent later pay nothing; a wait past 5 s fails with `lock_timeout`, 55P03, for the
 * caller to send the writer again), then the statement runs with `work_mem` room for hashing
 * its sets of rewards (PostgreSQL hashes an uncorrelated `in (subquery)` only when it expects the table to fit).
 * @throws {@link FencedOutError} when the fence had moved on already: nothing is written.
 */
async function writeBehindFence<T extends pg.QueryResultRow>(
  db: Db,
  fence: WriterFence,
  text: string,
  values: unknown[],
): Promise<{ rows: T[]; fence: string }> {
  const client = await db.connect();
  let broken: Error | undefined;
  try {
    await beginDeciding(client);
    // the fence waits for statements in flight: at most this long at a time (the job sends the writer again)
    await client.query(`select set_config('lock_timeout', '${FENCE_WAIT_MS}', true)`);
    const next =
      fence.kind === 'chunk'
        ? await passChunkFence(client, fence.batchId, fence.chunkNo, fence.fence)
        : await passEntryFence(client, fence.deadLetterId, fence.fence);
    await client.query(`set local work_mem = '64MB'`);
    const { rows } = await client.query<T>(text, values);
    await client.query('commit');
    return { rows, fence: next };
  } catch (error) {
    // a silent connection cannot even roll back: it is dropped (the server ends the transaction)
    if (isSilentConnection(error)) broken = error as Error;
    else
      await client.query('rollback').catch((rollbackError: unknown) => {
        broken = rollbackError as Error;
      });
    throw error;
  } finally {
    client.release(broken);
  }
}

/** What a writer did: the entries written now, and the fence the attempt holds after it. */
export interface DeadLettersWritten {
  readonly entries: WrittenDeadLetter[];
  /** The attempt's fence from now on (moved on by the writer, unchanged when nothing was to be written). */
  readonly fence: string;
}

/**
 * Writes the dead-letter entries of chunk users in one statement behind the chunk's fence, each entry's rewards
 * read from the staged batch (no reward passes through Node). Idempotent: an entry already written for the same
 * chunk, user, reason and rewards is not written again.
 * @throws {@link FencedOutError} when another attempt claimed the chunk: nothing is written.
 */
export async function recordChunkDeadLetters(
  db: Db,
  fence: Extract<WriterFence, { kind: 'chunk' }>,
  entries: readonly ChunkDeadLetter[],
): Promise<DeadLettersWritten> {
  if (entries.length === 0) return { entries: [], fence: fence.fence };
  const payload = entries.map((entry) => ({
    batch_id: entry.batchId,
    chunk_no: entry.chunkNo,
    shard: entry.shard,
    uid: entry.uid,
    reason: entry.reason,
    error: entry.error,
    attempts: entry.attempts,
    reward_ids: entry.rewardIds,
  }));
  const result = await writeBehindFence<WrittenRow>(db, fence, RECORD_CHUNK_DEAD_LETTERS_SQL, [
    JSON.stringify(payload),
  ]);
  return { entries: result.rows.map(written), fence: result.fence };
}

/**
 * Writes the dead-letter entries of replays (see {@link recordChunkDeadLetters}) behind the replayed entry's fence;
 * `replay_of` names the replayed entry.
 */
export async function recordReplayDeadLetters(
  db: Db,
  fence: Extract<WriterFence, { kind: 'replay' }>,
  entries: readonly ReplayDeadLetter[],
): Promise<DeadLettersWritten> {
  if (entries.length === 0) return { entries: [], fence: fence.fence };
  const payload = entries.map((entry) => ({
    replay_of: entry.replayOf,
    reason: entry.reason,
    error: entry.error,
    attempts: entry.attempts,
    reward_ids: entry.rewardIds,
  }));
  const result = await writeBehindFence<WrittenRow>(db, fence, RECORD_REPLAY_DEAD_LETTERS_SQL, [
    JSON.stringify(payload),
  ]);
  return { entries: result.rows.map(written), fence: result.fence };
}
