import type pg from 'pg';
import { CHUNK_DEAD_LETTERED_SQL, CHUNK_PLAN_SQL, CHUNK_USERS_SQL } from '../settlement/settlement-sql.js';
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
 * The users of chunk `chunkNo` of a batch, each with the number of its rewards still to settle; marks the batch
 * processing. Rewards the chunk already handed to the dead-letter queue are left out (the queue owns them), and a user
 * with nothing else left is not listed; the same user's other rewards are. Returns null when the chunk is not
 * recorded (its batch was removed).
 */
export async function loadChunkWork(db: Db, batchId: string, chunkNo: number): Promise<JobWork | null> {
  const [plan, deadLettered] = await Promise.all([
    db.query<{ shard: number; uids: string[] | null; user_rewards: number[] | null }>(CHUNK_PLAN_SQL, [
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
      : (await db.query<{ uid: string; rewards: number }>(CHUNK_USERS_SQL, [batchId, chunkNo])).rows;
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
