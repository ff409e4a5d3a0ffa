import type pg from 'pg';
import type { UserTask } from '../settlement/user-task.js';

/** The users of one job (their rewards stay in PostgreSQL). */
export interface JobWork {
  readonly batchId: string;
  readonly shard: number;
  readonly tasks: UserTask[];
  /** Rewards to settle, all users together. */
  readonly rewards: number;
}

type Db = Pick<pg.Pool, 'query'>;

/**
 * Chunk `$2` of batch `$1` with the users the enqueue command counted for it (`uids`, `user_rewards`; null when
 * PostgreSQL planned the batch: then {@link LOAD_CHUNK_USERS_SQL}), and marks the batch processing.
 */
const LOAD_CHUNK_SQL = `
with started as (
  update reward_batches set status = 'processing', updated_at = now() where batch_id = $1 and status = 'pending'
)
select shard, uids, user_rewards from reward_chunks where batch_id = $1 and chunk_no = $2`;

/**
 * The users of chunk `$2` of batch `$1` with the number of their rewards, from the staged rows (and marks the batch
 * processing). Rewards already in the chunk's dead-letter entries are counted too: see {@link CHUNK_DEAD_LETTERED_SQL}.
 */
const LOAD_CHUNK_USERS_SQL = `
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
const CHUNK_DEAD_LETTERED_SQL = `
select d.uid, r.value->>'rewardId' as reward_id
from dead_letters d cross join jsonb_array_elements(d.rewards) as r(value)
where d.batch_id = $1 and d.chunk_no = $2`;

/**
 * The users of chunk `chunkNo` of a batch, each with the number of its rewards still to settle; marks the batch
 * processing. Rewards the chunk already handed to the dead-letter queue are left out (the queue owns them), and a user
 * with nothing else left is not listed; the same user's other rewards are. Returns null when the chunk is not
 * recorded (its batch was removed).
 */
export async function loadChunkWork(db: Db, batchId: string, chunkNo: number): Promise<JobWork | null> {
  const [plan, deadLettered] = await Promise.all([
    db.query<{ shard: number; uids: string[] | null; user_rewards: number[] | null }>(LOAD_CHUNK_SQL, [
      batchId,
      chunkNo,
    ]),
    db.query<{ uid: string; reward_id: string | null }>(CHUNK_DEAD_LETTERED_SQL, [batchId, chunkNo]),
  ]);
  const chunk = plan.rows[0];
  if (!chunk) return null;
  const users =
    chunk.uids !== null && chunk.user_rewards !== null
      ? chunk.uids.map((uid, i) => ({ uid, rewards: chunk.user_rewards![i]! }))
      : (await db.query<{ uid: string; rewards: number }>(LOAD_CHUNK_USERS_SQL, [batchId, chunkNo])).rows;
  const excluded = new Map<string, Set<string>>();
  for (const row of deadLettered.rows) {
    // (an entry's rewards always carry their id; a null would make `not in` exclude every reward of the batch)
    if (row.reward_id === null) continue;
    const set = excluded.get(row.uid) ?? new Set<string>();
    set.add(row.reward_id);
    excluded.set(row.uid, set);
  }
  const { shard } = chunk;
  const tasks: UserTask[] = [];
  let rewards = 0;
  for (const row of users) {
    const left = excluded.get(row.uid);
    const pending = row.rewards - (left?.size ?? 0);
    if (pending <= 0) continue;
    tasks.push({
      uid: row.uid,
      rewards: pending,
      source: { kind: 'chunk', batchId, chunkNo, shard, excluded: left ? [...left] : [] },
    });
    rewards += pending;
  }
  return { batchId, shard, tasks, rewards };
}

/** The replay of dead-letter entry `deadLetterId`: its user, with the rewards no earlier run of the replay has handed on. */
export async function loadReplayWork(db: Db, deadLetterId: string): Promise<JobWork | null> {
  const { rows } = await db.query<{ batch_id: string; shard: number; uid: string; rewards: number }>(
    `select d.batch_id, d.shard, d.uid,
            (select count(*)::int from jsonb_array_elements(d.rewards) as r(value)
              where r.value->>'rewardId' not in (
                select c_reward.value->>'rewardId'
                from dead_letters c cross join lateral jsonb_array_elements(c.rewards) as c_reward(value)
                where c.replay_of = $1
              )) as rewards
     from dead_letters d where d.id = $1`,
    [deadLetterId],
  );
  const entry = rows[0];
  if (!entry) return null;
  const tasks: UserTask[] =
    entry.rewards > 0
      ? [{ uid: entry.uid, rewards: entry.rewards, source: { kind: 'replay', batchId: entry.batch_id, deadLetterId } }]
      : [];
  return { batchId: entry.batch_id, shard: entry.shard, tasks, rewards: entry.rewards };
}
