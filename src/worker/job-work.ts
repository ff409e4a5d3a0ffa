import { claimChunk, type ChunkClaim } from '../db/fences.js';
import type { UserTask } from '../settlement/user-task.js';
import type { Queryable } from '../db/queryable.js';

/** The users of one job (their rewards stay in PostgreSQL). */
export interface JobWork {
  readonly batchId: string;
  readonly shard: number;
  readonly tasks: UserTask[];
  /** Rewards to settle, all users together. */
  readonly rewards: number;
}

/**
 * The users of chunk `$2` of batch `$1` with the number of their rewards, from the staged rows. Rewards already in
 * the chunk's dead-letter entries are counted too: see {@link CHUNK_DEAD_LETTERED_SQL}.
 */
const LOAD_CHUNK_USERS_SQL = `
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
 * The users of chunk `chunkNo` of a batch, each with the number of its rewards still to settle, for the attempt that
 * made `claim` (read after it: they include whatever an earlier attempt dead-lettered). Rewards the chunk already
 * handed to the dead-letter queue are left out (the queue owns them), and a user with nothing else left is not
 * listed; the same user's other rewards are. Each task carries the claim's fence.
 */
export async function loadClaimedChunk(
  db: Queryable,
  batchId: string,
  chunkNo: number,
  claim: Extract<ChunkClaim, { kind: 'claimed' }>,
): Promise<JobWork> {
  const [deadLettered, users] = await Promise.all([
    db.query<{ uid: string; reward_id: string | null }>(CHUNK_DEAD_LETTERED_SQL, [batchId, chunkNo]),
    claim.uids !== null && claim.userRewards !== null
      ? claim.uids.map((uid, i) => ({ uid, rewards: claim.userRewards![i]! }))
      : db.query<{ uid: string; rewards: number }>(LOAD_CHUNK_USERS_SQL, [batchId, chunkNo]).then(({ rows }) => rows),
  ]);
  const excluded = new Map<string, Set<string>>();
  for (const row of deadLettered.rows) {
    // (an entry's rewards always carry their id; a null would make the statement leave out every reward)
    if (row.reward_id === null) continue;
    const set = excluded.get(row.uid) ?? new Set<string>();
    set.add(row.reward_id);
    excluded.set(row.uid, set);
  }
  const { shard, fence } = claim;
  const tasks: UserTask[] = [];
  let rewards = 0;
  for (const row of users) {
    const left = excluded.get(row.uid);
    const pending = row.rewards - (left?.size ?? 0);
    if (pending <= 0) continue;
    tasks.push({
      uid: row.uid,
      rewards: pending,
      source: { kind: 'chunk', batchId, chunkNo, shard, excluded: left ? [...left] : [], fence },
    });
    rewards += pending;
  }
  return { batchId, shard, tasks, rewards };
}

/**
 * Claims chunk `chunkNo` of a batch for a new attempt ({@link claimChunk}) and loads its users
 * ({@link loadClaimedChunk}). Null when the chunk is complete or not recorded.
 */
export async function loadChunkWork(db: Queryable, batchId: string, chunkNo: number): Promise<JobWork | null> {
  const claim = await claimChunk(db, batchId, chunkNo);
  return claim.kind === 'claimed' ? loadClaimedChunk(db, batchId, chunkNo, claim) : null;
}

/**
 * The replay of dead-letter entry `deadLetterId`, claimed with `fence` ({@link claimEntry}): its user, with the
 * rewards no earlier run of the replay has handed on.
 */
export async function loadReplayWork(db: Queryable, deadLetterId: string, fence: string): Promise<JobWork | null> {
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
      ? [
          {
            uid: entry.uid,
            rewards: entry.rewards,
            source: { kind: 'replay', batchId: entry.batch_id, deadLetterId, fence },
          },
        ]
      : [];
  return { batchId: entry.batch_id, shard: entry.shard, tasks, rewards: entry.rewards };
}
