import type pg from 'pg';
import type { StoredReward } from '../db/schema.js';
import type { Reward } from '../rewards/reward.js';
import type { ExistingEntry } from '../wallet/ledger-operation.js';
import { classifyExisting, describeConflict } from '../wallet/ledger-operation.js';

/** One user's part of a job, sorted by what the ledger already says about each reward. */
export interface UserWork {
  readonly uid: string;
  /** Not in the ledger yet: to apply under the user's lock. */
  readonly pending: Reward[];
  /** Already applied by this batch (an earlier attempt): nothing to do. */
  alreadyApplied: number;
  /** Already applied elsewhere with the same user and amount. */
  readonly duplicates: string[];
  /** The id was used for another user or amount. */
  readonly conflicts: { reward: Reward; detail: string }[];
}

/** The work of one job. */
export interface JobWork {
  readonly batchId: string;
  readonly shard: number;
  readonly users: UserWork[];
  /** Rewards the job covers (for logs). */
  readonly rewards: number;
}

interface ItemRow {
  uid: string;
  reward_id: string;
  amount: bigint;
  description: string | null;
  l_uid: string | null;
  l_amount: bigint | null;
  l_batch: string | null;
}

/** Sorts rewards (grouped by uid, in order) into {@link UserWork}s using the ledger entry each id already has. */
export function sortRewards(batchId: string, items: Iterable<{ reward: Reward; existing: ExistingEntry | null }>): UserWork[] {
  const users: UserWork[] = [];
  let current: UserWork | undefined;
  for (const { reward, existing } of items) {
    if (!current || current.uid !== reward.uid) {
      current = { uid: reward.uid, pending: [], alreadyApplied: 0, duplicates: [], conflicts: [] };
      users.push(current);
    }
    if (!existing) {
      current.pending.push(reward);
      continue;
    }
    const outcome = classifyExisting(reward.uid, reward.amount, batchId, existing);
    if (outcome === 'already_applied') current.alreadyApplied += 1;
    else if (outcome === 'duplicate') current.duplicates.push(reward.rewardId);
    else current.conflicts.push({ reward, detail: describeConflict(reward.uid, reward.amount, existing) });
  }
  return users;
}

const LOAD_CHUNK_SQL = (withLedger: boolean) => `
with started as (
  update reward_batches set status = 'processing', updated_at = now() where batch_id = $1 and status = 'pending'
)
select c.shard, i.uid, i.reward_id, i.amount, i.description${withLedger ? ', l.uid as l_uid, l.amount as l_amount, l.batch_id as l_batch' : ''}
from reward_chunks c
join reward_batch_items i on i.batch_id = c.batch_id and i.shard = c.shard and i.uid between c.first_uid and c.last_uid
${withLedger ? 'left join ledger_entries l on l.operation_id = i.reward_id' : ''}
where c.batch_id = $1 and c.chunk_no = $2
  and not exists (
    select 1 from dead_letters d
    where d.batch_id = $1 and d.chunk_no = $2 and d.uid = i.uid
      and d.rewards @> jsonb_build_array(jsonb_build_object('rewardId', i.reward_id))
  )
order by i.uid, i.reward_id`;
const LOAD_CHUNK_WITH_LEDGER_SQL = LOAD_CHUNK_SQL(true);
const LOAD_CHUNK_ONLY_SQL = LOAD_CHUNK_SQL(false);

/** Options of {@link loadChunkWork}. */
export interface LoadChunkOptions {
  /**
   * Look up what the ledger already holds for each reward (default true), so that users whose rewards are all
   * applied are not locked at all. A first run of a chunk can skip it: its rewards are new unless another batch
   * used the ids, and the user statement finds and reports those itself (skipped, then read back).
   */
  readonly ledger?: boolean;
}

/**
 * Loads the rewards of chunk `chunkNo` (with what the ledger already holds for each id, unless told not to), in one
 * query; marks the batch processing. Rewards already handed to the dead-letter queue by this chunk are left out (the
 * queue owns them now); the same user's other rewards are not: they are still to be applied. Returns null when the chunk is not recorded (its batch was removed).
 */
export async function loadChunkWork(db: Pick<pg.Pool, 'query'>, batchId: string, chunkNo: number, options: LoadChunkOptions = {}): Promise<JobWork | null> {
  const { rows } = await db.query<Partial<ItemRow> & Pick<ItemRow, 'uid' | 'reward_id' | 'amount' | 'description'> & { shard: number }>(
    options.ledger === false ? LOAD_CHUNK_ONLY_SQL : LOAD_CHUNK_WITH_LEDGER_SQL,
    [batchId, chunkNo],
  );
  if (rows.length === 0) {
    const chunk = await db.query<{ shard: number }>('select shard from reward_chunks where batch_id = $1 and chunk_no = $2', [batchId, chunkNo]);
    if (!chunk.rows[0]) return null;
    return { batchId, shard: chunk.rows[0].shard, users: [], rewards: 0 };
  }
  const users = sortRewards(
    batchId,
    rows.map((row) => ({
      reward: { rewardId: row.reward_id, uid: row.uid, amount: row.amount, description: row.description },
      existing: row.l_uid != null && row.l_amount != null ? { uid: row.l_uid, amount: row.l_amount, batchId: row.l_batch ?? null } : null,
    })),
  );
  return { batchId, shard: rows[0]!.shard, users, rewards: rows.length };
}

/** The dead-letter entry a replay job replays, with its rewards sorted against the ledger; null when missing. */
export async function loadReplayWork(
  db: Pick<pg.Pool, 'query'>,
  deadLetterId: string,
): Promise<(JobWork & { readonly state: string }) | null> {
  const { rows } = await db.query<{ batch_id: string; shard: number; uid: string; rewards: StoredReward[]; state: string }>(
    'select batch_id, shard, uid, rewards, state from dead_letters where id = $1',
    [deadLetterId],
  );
  const entry = rows[0];
  if (!entry) return null;
  const rewards: Reward[] = entry.rewards.map((stored) => ({
    rewardId: stored.rewardId,
    uid: stored.uid,
    amount: BigInt(stored.amount),
    description: stored.description ?? null,
  }));
  const found = await db.query<{ operation_id: string; uid: string; amount: bigint; batch_id: string | null }>(
    'select operation_id, uid, amount, batch_id from ledger_entries where operation_id = any($1::text[])',
    [rewards.map((reward) => reward.rewardId)],
  );
  const existing = new Map(found.rows.map((row) => [row.operation_id, { uid: row.uid, amount: row.amount, batchId: row.batch_id }]));
  const users = sortRewards(
    entry.batch_id,
    rewards.map((reward) => ({ reward, existing: existing.get(reward.rewardId) ?? null })),
  );
  return { batchId: entry.batch_id, shard: entry.shard, users, rewards: rewards.length, state: entry.state };
}
