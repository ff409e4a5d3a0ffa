import { ConfigError } from '../config/config-error.js';
import type { Queryable } from '../db/queryable.js';

/**
 * An open batch with chunks on shards at or beyond the configured `WINDFALL_SHARDS`: it was staged with more shards,
 * and its chunk jobs wait in shard queues that no worker of the lower setting reads.
 */
export interface StrandedBatch {
  readonly batchId: string;
  /** The shard count the batch was staged with. */
  readonly stagedShards: number;
  /** Its open chunks on shards ≥ the configured count. */
  readonly openChunks: number;
}

const STRANDED_BATCHES_SQL = `
select c.batch_id, b.shards as staged_shards, count(*)::int as open_chunks
from reward_chunks c join reward_batches b on b.batch_id = c.batch_id
where c.completed_at is null and c.shard >= $1
group by c.batch_id, b.shards, b.created_at
order by b.created_at, c.batch_id`;

/** Open batches with chunks on shards ≥ `shards`, oldest first (none in normal operation). */
async function findStrandedBatches(db: Queryable, shards: number): Promise<StrandedBatch[]> {
  const { rows } = await db.query<{ batch_id: string; staged_shards: number; open_chunks: number }>(
    STRANDED_BATCHES_SQL,
    [shards],
  );
  return rows.map((row) => ({ batchId: row.batch_id, stagedShards: row.staged_shards, openChunks: row.open_chunks }));
}

/** What to tell an operator about stranded batches: which ones, the shard count they need, what to do. */
export function describeStrandedBatches(batches: readonly StrandedBatch[], shards: number): string {
  const needed = Math.max(...batches.map((batch) => batch.stagedShards));
  const listed = batches
    .slice(0, 10)
    .map(
      (batch) =>
        `${batch.batchId} (staged with ${batch.stagedShards} shards; ${batch.openChunks} open chunk${batch.openChunks === 1 ? '' : 's'} on shards ${shards} and above)`,
    );
  const more = batches.length > 10 ? ` and ${batches.length - 10} more` : '';
  return (
    `WINDFALL_SHARDS is ${shards}, but ${batches.length} open batch${batches.length === 1 ? ' has' : 'es have'} chunk jobs in shard queues ` +
    `no worker of this setting reads: ${listed.join(', ')}${more}. Start the workers with WINDFALL_SHARDS=${needed} until these batches ` +
    `complete (windfall batch <batchId>), then lower it.`
  );
}

/**
 * Refuses a worker start that would strand work: throws when an open chunk sits on a shard ≥ `shards` (the shard
 * count was lowered while batches staged with more were open). Chunks are not re-routed to other queues: a chunk
 * holds the users of one shard of the old count, and its job belongs to that shard's queue.
 * @throws {@link ConfigError} naming `WINDFALL_SHARDS`, the batches, the count they need and what to do (CLI exit 2).
 */
export async function assertNoStrandedChunks(db: Queryable, shards: number): Promise<void> {
  const stranded = await findStrandedBatches(db, shards);
  if (stranded.length > 0)
    throw new ConfigError(
      'WINDFALL_SHARDS',
      describeStrandedBatches(stranded, shards).replace(/^WINDFALL_SHARDS is/, 'set to'),
    );
}
