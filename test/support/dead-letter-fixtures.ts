import type pg from 'pg';
import type { DeadLetterReason, StoredReward } from '../../src/db/schema.js';
import type { DeadLetterEntry, DeadLetterRow } from '../../src/dead-letters/dead-letter-store.js';
import { toEntry } from '../../src/dead-letters/dead-letter-store.js';
import type { Reward } from '../../src/rewards/reward.js';

/**
 * A dead-letter entry with its rewards given, for tests that need an entry without running a worker into a failure
 * (the worker writes its own from the staged batch: src/dead-letters/dead-letter-writer.ts). `source` makes recording
 * idempotent: an entry whose source is recorded already is not written again.
 */
export interface NewDeadLetter {
  readonly source: string;
  readonly batchId: string;
  readonly chunkNo: number | null;
  readonly replayOf: string | null;
  readonly uid: string;
  readonly shard: number;
  readonly rewards: readonly Reward[];
  readonly reason: DeadLetterReason;
  readonly error: string;
  readonly attempts: number;
}

/** A reward as an entry stores it: money as a digit string, `description` only when there is one. */
function storeReward(reward: Reward): StoredReward {
  return {
    rewardId: reward.rewardId,
    uid: reward.uid,
    amount: reward.amount.toString(),
    ...(reward.description !== null ? { description: reward.description } : {}),
  };
}

/** Records entries in one statement; an entry whose `source` is already recorded is skipped. Returns those written. */
export async function recordDeadLetters(
  db: Pick<pg.Pool, 'query'>,
  entries: readonly NewDeadLetter[],
): Promise<DeadLetterEntry[]> {
  if (entries.length === 0) return [];
  const payload = entries.map((entry) => ({
    source: entry.source,
    batch_id: entry.batchId,
    chunk_no: entry.chunkNo,
    replay_of: entry.replayOf,
    uid: entry.uid,
    shard: entry.shard,
    rewards: entry.rewards.map(storeReward),
    reward_count: entry.rewards.length,
    reason: entry.reason,
    error: entry.error.slice(0, 2000),
    attempts: entry.attempts,
  }));
  const { rows } = await db.query<DeadLetterRow>(
    `insert into dead_letters (source, batch_id, chunk_no, replay_of, uid, shard, rewards, reward_count, amount, reason, error, attempts)
     select source, batch_id, chunk_no, replay_of, uid, shard, rewards, reward_count,
            (select coalesce(sum((r.value->>'amount')::numeric), 0) from jsonb_array_elements(rewards) as r(value)),
            reason, error, attempts
     from jsonb_to_recordset($1::jsonb) as x(source text, batch_id text, chunk_no int, replay_of bigint, uid text, shard int,
                                             rewards jsonb, reward_count int, reason text, error text, attempts int)
     on conflict (source) do nothing
     returning *`,
    [JSON.stringify(payload)],
  );
  return rows.map(toEntry);
}
