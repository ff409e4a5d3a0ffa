import type pg from 'pg';
import type { Queryable } from './queryable.js';

/*
 * Fences (ADR 0013). A job attempt claims its chunk (or the dead-letter entry it replays) by moving the row's `fence`
 * on and keeps the value it got; its settlement statements lock the row `for share` and settle nothing unless it
 * still carries that value. Whatever decides that rewards will not be paid now moves the fence on too: the update
 * waits for the statements holding the row to commit (their payments are then seen), and every statement that comes
 * later finds the fence moved and pays nothing. A frozen worker or a silent connection cannot pay afterwards.
 */

/** The job attempt's fence had moved on: another attempt claimed its work, or its rewards were given up. */
export class FencedOutError extends Error {
  override readonly name = 'FencedOutError';
}

/**
 * How long one wait of a claim for the statements of an earlier attempt may last before the claim is sent again
 * (between tries the worker may stop), ms. Their own `lock_timeout` and idle limit bound how long they hold a fence.
 */
export const FENCE_WAIT_MS = 5000;

/** Where a job attempt's claim of its chunk left it. */
export type ChunkClaim =
  | {
      readonly kind: 'claimed';
      /** The fence this attempt's statements carry. */
      readonly fence: string;
      readonly shard: number;
      readonly uids: string[] | null;
      readonly userRewards: number[] | null;
    }
  /** Every user of the chunk is settled or dead-lettered (or the batch was reverted or cancelled): nothing to do. */
  | { readonly kind: 'completed' }
  /** No such chunk (its batch was removed). */
  | { readonly kind: 'missing' };

/**
 * Claims chunk `$2` of batch `$1` for a new attempt (moves its fence on, waiting up to `$3` ms for the statements of
 * an earlier attempt to finish) and marks the batch processing. Answers the chunk's plan and the new fence. Nothing
 * is claimed once the batch is cancelled: its row is read `for key share` (a cancel's decision, which locks it
 * `for update`, waits for the claim, or the claim re-reads the cancelled row), before the chunk's. Not `for share`:
 * the status update of a concurrent claim of another chunk (`for no key update`) would then wait for this claim's
 * share lock while this claim's own status update waits for that one's, a deadlock (40P01) of first claims.
 */
const CLAIM_CHUNK_SQL = `
with started as (
  update reward_batches set status = 'processing', updated_at = now() where batch_id = $1 and status = 'pending'
)
update reward_chunks set fence = fence + 1
where batch_id = $1 and chunk_no = $2 and completed_at is null
  and (select set_config('lock_timeout', $3, true)) is not null
  and coalesce((select b.cancelled_at is null from reward_batches b where b.batch_id = $1 for key share), true)
returning shard, uids, user_rewards, fence::text as fence`;

/** Claims a chunk for a new job attempt. A wait past `waitMs` throws a `lock_timeout` error (55P03): send it again. */
export async function claimChunk(
  db: Queryable,
  batchId: string,
  chunkNo: number,
  waitMs = FENCE_WAIT_MS,
): Promise<ChunkClaim> {
  const { rows } = await db.query<{
    shard: number;
    uids: string[] | null;
    user_rewards: number[] | null;
    fence: string;
  }>(CLAIM_CHUNK_SQL, [batchId, chunkNo, String(waitMs)]);
  const row = rows[0];
  if (row)
    return { kind: 'claimed', fence: row.fence, shard: row.shard, uids: row.uids, userRewards: row.user_rewards };
  const known = await db.query('select 1 from reward_chunks where batch_id = $1 and chunk_no = $2', [batchId, chunkNo]);
  return known.rowCount === 0 ? { kind: 'missing' } : { kind: 'completed' };
}

/**
 * Claims dead-letter entry `deadLetterId` for a new replay attempt: marks it replayed if it is still open (the job
 * may run before the replay command marks it) and moves its fence on. Null when the entry was purged or is not
 * recorded, or its batch was cancelled (the batch row is locked `for key share`: a cancel, which locks it `for
 * update`, waits for the claim, or the claim re-reads the cancelled row): the replay must apply nothing. Exactly one
 * of a purge and a replay of the same entry takes effect (both update the row). A wait past `waitMs` throws a
 * `lock_timeout` error (55P03): send it again.
 */
export async function claimEntry(db: Queryable, deadLetterId: string, waitMs = FENCE_WAIT_MS): Promise<string | null> {
  if (!/^\d{1,18}$/.test(deadLetterId)) return null;
  const { rows } = await db.query<{ fence: string }>(
    `update dead_letters d set state = 'replayed', replayed_at = coalesce(replayed_at, now()), fence = fence + 1
     where id = $1 and state in ('open', 'replayed') and (select set_config('lock_timeout', $2, true)) is not null
       and coalesce(
         (select b.cancelled_at is null from reward_batches b where b.batch_id = d.batch_id for key share),
         true
       )
     returning fence::text as fence`,
    [deadLetterId, String(waitMs)],
  );
  return rows[0]?.fence ?? null;
}

/**
 * Inside a transaction that gives up rewards of a chunk (writes dead-letter entries): moves the chunk's fence on
 * if it still carries `fence`, waiting for the chunk's statements in flight, and answers the new fence (the attempt
 * still owns the chunk under it: its statements sent before carry the old one). Throws {@link FencedOutError} when it
 * had moved on already (this attempt no longer owns the chunk: it must decide nothing).
 */
export async function passChunkFence(
  client: pg.PoolClient,
  batchId: string,
  chunkNo: number,
  fence: string,
): Promise<string> {
  const moved = await client.query<{ fence: string }>(
    'update reward_chunks set fence = fence + 1 where batch_id = $1 and chunk_no = $2 and fence = $3 returning fence::text as fence',
    [batchId, chunkNo, fence],
  );
  const next = moved.rows[0]?.fence;
  if (next === undefined) {
    throw new FencedOutError(
      `chunk ${chunkNo} of batch ${JSON.stringify(batchId)} was claimed by another attempt of its job (or its rewards were given up): this attempt decides nothing more`,
    );
  }
  return next;
}

/** {@link passChunkFence} for the dead-letter entry a replay attempt claimed. */
export async function passEntryFence(client: pg.PoolClient, deadLetterId: string, fence: string): Promise<string> {
  const moved = await client.query<{ fence: string }>(
    'update dead_letters set fence = fence + 1 where id = $1 and fence = $2 returning fence::text as fence',
    [deadLetterId, fence],
  );
  const next = moved.rows[0]?.fence;
  if (next === undefined) {
    throw new FencedOutError(
      `dead-letter entry ${deadLetterId} was claimed by another attempt of its replay (or its rewards were given up): this attempt decides nothing more`,
    );
  }
  return next;
}

/**
 * Inside a transaction that gives up rewards of batch `batchId` (a revert): moves the fence of every chunk and
 * dead-letter entry of the batch on, waiting for their statements in flight. Once the transaction commits, no
 * statement of any earlier attempt pays a reward of the batch.
 */
export async function fenceBatch(client: pg.PoolClient, batchId: string): Promise<void> {
  await client.query('update reward_chunks set fence = fence + 1 where batch_id = $1', [batchId]);
  await client.query('update dead_letters set fence = fence + 1 where batch_id = $1', [batchId]);
}

const BEGIN_DECIDING_SQL = `begin isolation level read committed; select set_config('idle_in_transaction_session_timeout', '30000', true)`;

/**
 * Begins a transaction for deciding about rewards: read committed (each statement sees what committed before it
 * started — after a fence's wait), and ended by the server if this process stops between its statements for 30 s
 * (a frozen process would otherwise hold the fence for ever). One round trip.
 */
export async function beginDeciding(client: pg.PoolClient): Promise<void> {
  await client.query(BEGIN_DECIDING_SQL);
}
