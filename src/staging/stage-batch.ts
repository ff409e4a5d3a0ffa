import type pg from 'pg';
import { BudgetExceededError, reserveBudget } from './budget-reservation.js';
import type { BatchPriority } from '../db/schema.js';
import { isLockTimeout, isUniqueViolation } from '../db/pg-errors.js';
import { shardOf } from '../queue/shard-routing.js';
import type { SourceRecord } from '../rewards/reward-sources.js';
import { BatchValidationError } from '../rewards/batch-errors.js';
import { SetDigest } from './content-digest.js';
import { copyIn } from './copy-in.js';
import { CopyBuffer, copyText, rowsOfCopyText } from './copy-text.js';
import { FingerprintSet } from './fingerprint-set.js';
import { BatchReader } from '../rewards/batch-reader.js';
import { ChunkPlanner, INSERT_PLANNED_CHUNKS_SQL, PLAN_CHUNKS_SQL, plannedChunkParameters } from './chunk-plan.js';
import { LISTED_ERRORS } from '../rewards/row-error-report.js';
import type { Queryable } from '../db/queryable.js';
import { isSilentConnection, withDeadline } from '../db/silent-connections.js';

/** Rows sent to PostgreSQL per insert when a chunk has to be inserted row-checked (it repeats a user's rewardId). */
const STAGE_ROWS_PER_INSERT = 5000;

/**
 * Rows staged per COPY (each in a savepoint of its own, so that a chunk repeating a (user, rewardId) pair can be
 * redone row by row to name the repeats). One COPY runs while the next chunk is read, so the last one is all that
 * PostgreSQL still has to do once the file is read: small chunks while the batch is small (5,000 rows), then an
 * eighth of the rows so far, up to 100,000. A transaction keeps its first 64 subtransactions cheap for everyone
 * else's snapshots: 16 chunks for 100,000 rows, 36 for 1 M, 64 only past 3.8 M (before: 4 + 36, past 3.4 M).
 */
function chunkRows(rowsSoFar: number): number {
  return Math.min(100_000, Math.max(5_000, Math.floor(rowsSoFar / 8)));
}

/**
 * Deadline of a statement that reads the whole staged batch (the repeat check, the chunk plan in SQL), ms: 2 minutes
 * + 0.05 ms a row (10 M rows: 10 minutes), ten times what they take here, so that only a silent connection meets it.
 * It replaces the pool's own deadline (`windfall serve`'s 80 s), which a very large batch could exceed.
 */
function wholeBatchDeadlineMs(rows: number): number {
  return 120_000 + Math.ceil(rows * 0.05);
}

/** Longest single wait of {@link claimBatchId} for another transaction staging the same batch id. */
const CLAIM_WAIT = '5s';

/**
 * Records the batch row (empty for now) in the client's transaction: true when this call claimed the id, false when
 * the batch was recorded before. A request staging the same id at that moment is waited for (it may take minutes: a
 * large streamed body) in waits of at most {@link CLAIM_WAIT}, each its own statement, so that no statement of this
 * one outlasts a statement deadline (`windfall serve`'s pool would take that for a silent connection). The lock wait
 * limit is reset afterwards.
 */
async function claimBatchId(client: pg.PoolClient, options: StageOptions): Promise<boolean> {
  // one round trip: the wait limit goes with the first savepoint
  for (let savepoint = `set local lock_timeout = '${CLAIM_WAIT}'; savepoint windfall_claim`; ;) {
    await client.query(savepoint);
    savepoint = 'savepoint windfall_claim';
    try {
      const claimed = await client.query(
        `insert into reward_batches (batch_id, total, users, chunks, shards, content_digest, campaign_id, priority)
         values ($1, 0, 0, 0, $2, '', $3, $4) on conflict (batch_id) do nothing returning batch_id`,
        [options.batchId, options.shards, options.campaignId ?? null, options.priority ?? 'normal'],
      );
      await client.query('release savepoint windfall_claim; set local lock_timeout = default');
      return claimed.rowCount === 1;
    } catch (error) {
      if (!isLockTimeout(error)) throw error;
      await client.query('rollback to savepoint windfall_claim');
    }
  }
}

/** A staged row as the fallback insert sends it. */
interface StagedRow {
  readonly shard: number;
  readonly uid: string;
  readonly rewardId: string;
  readonly row: number;
  readonly amount: string;
  readonly description: string | null;
}

const COPY_ITEMS_SQL =
  'copy reward_batch_items (batch_id, shard, uid, reward_id, row_no, amount, description) from stdin';

/** Options of {@link stageBatch}. */
export interface StageOptions {
  readonly batchId: string;
  readonly shards: number;
  /** Rewards per chunk (shard job); a user is never split. */
  readonly chunkSize: number;
  /** Refuse batches with more rewards than this. */
  readonly maxRows: number;
  /** Called once every row has been read, while PostgreSQL still stages, checks and plans (before the commit). */
  readonly onRowsRead?: () => void;
  /** The campaign whose budget the batch's total is reserved from (checked before the commit). Default: none. */
  readonly campaignId?: string;
  /** Lane of the batch's chunk jobs. Default `normal`. */
  readonly priority?: BatchPriority;
  /**
   * Most memory (estimated) the chunk plan may take while the rows are read; a batch with more users is planned by
   * PostgreSQL from the staged rows. The set that spots repeated rewardIds keeps at most as much (past it, PostgreSQL
   * names the repeats). Default `DEFAULT_PLANNED_BYTES` (32 MiB).
   */
  readonly plannedBytes?: number;
}

/** A batch as recorded in `reward_batches`. */
export interface StagedBatch {
  readonly batchId: string;
  readonly total: number;
  readonly users: number;
  readonly chunks: number;
  readonly shards: number;
  /** False when the batch id was already recorded: nothing was read or written. */
  readonly created: boolean;
  /** False until every chunk job has been handed to BullMQ. */
  readonly enqueued: boolean;
  readonly contentDigest: string;
  /** The campaign it pays out of, or null. */
  readonly campaignId: string | null;
  readonly priority: BatchPriority;
  /** Sum of its amounts (minor units), kept for a batch of a campaign (its budget's reservation); else null. */
  readonly amountTotal: string | null;
}

const INSERT_ITEMS_SQL = `
insert into reward_batch_items (batch_id, shard, uid, reward_id, row_no, amount, description)
select $1, * from unnest($2::int[], $3::text[], $4::text[], $5::int[], $6::int8[], $7::text[])
on conflict do nothing
returning row_no`;

/** The first rows ($2 of them) that repeat the rewardId of an earlier row, the row they repeat, and how many do. */
const FIND_REPEATS_SQL = `
with repeated as (
  select reward_id, min(row_no) as first_row
  from reward_batch_items where batch_id = $1
  group by reward_id having count(*) > 1
)
select i.row_no, r.first_row, (count(*) over ())::int as total
from reward_batch_items i join repeated r on r.reward_id = i.reward_id
where i.batch_id = $1 and i.row_no > r.first_row
order by i.row_no
limit $2`;

const REPEAT_REASON = (first: number | string): string =>
  `repeats row ${first} of this batch (a rewardId may appear once per batch)`;

function batchRow(row: Record<string, unknown>, created: boolean): StagedBatch {
  return {
    batchId: row['batch_id'] as string,
    total: row['total'] as number,
    users: row['users'] as number,
    chunks: row['chunks'] as number,
    shards: row['shards'] as number,
    created,
    enqueued: row['enqueued_at'] !== null,
    contentDigest: row['content_digest'] as string,
    campaignId: (row['campaign_id'] as string | null) ?? null,
    priority: (row['priority'] as BatchPriority | undefined) ?? 'normal',
    amountTotal: row['amount_total'] === null || row['amount_total'] === undefined ? null : String(row['amount_total']),
  };
}

/** Reads the recorded batch, or null. */
export async function findBatch(db: Queryable, batchId: string): Promise<StagedBatch | null> {
  const { rows } = await db.query('select * from reward_batches where batch_id = $1', [batchId]);
  return rows[0] ? batchRow(rows[0] as Record<string, unknown>, false) : null;
}

/**
 * Validates a whole batch and records it in PostgreSQL, in one transaction: the batch row, every reward
 * (`reward_batch_items`) and the chunk plan (`reward_chunks`, users of a shard cut into runs of about
 * `chunkSize` rewards). Streams: memory does not grow with the batch.
 *
 * When the batch id is already recorded, nothing is read and the recorded batch is returned (`created: false`).
 * When any row is invalid — or a rewardId repeats within the batch — the transaction is rolled back and
 * {@link BatchValidationError} reports the offending rows (the first 1,000 errors, and every one counted).
 */
export async function stageBatch(
  pool: pg.Pool,
  records: AsyncIterable<SourceRecord>,
  options: StageOptions,
): Promise<StagedBatch> {
  const client = await pool.connect();
  // the chunk being staged while the next one is read: a refusal waits for it before rolling back (see the catch)
  let staging: Promise<void> = Promise.resolve();
  let released = false;
  const release = (error?: Error): void => {
    if (!released) {
      released = true;
      client.release(error);
    }
  };
  try {
    // read committed whatever the database's default: the budget check reads, after locking its campaign's row, the
    // batches committed meanwhile (a repeatable-read snapshot, taken at the first statement, would not see them)
    await client.query('begin isolation level read committed');
    // The repeat check and the chunk plan aggregate the whole batch: let them hash it in memory, not in temp files.
    await client.query(`set local work_mem = '64MB'`);
    if (!(await claimBatchId(client, options))) {
      await client.query('rollback');
      const existing = await findBatch(client, options.batchId);
      if (!existing) throw new Error(`batch ${options.batchId} vanished while being enqueued; try again`);
      return existing;
    }

    const reader = new BatchReader(options.maxRows);
    const { report } = reader;
    const digest = new SetDigest();
    let chunkCount = 0;
    const copy = new CopyBuffer();
    const batchText = copyText(options.batchId);
    // rewardIds seen so far, as fingerprints: when no two match, the batch repeats no rewardId and the SQL check
    // over the whole batch can be skipped
    const seen = new FingerprintSet(options.plannedBytes);
    const planner = new ChunkPlanner(options.shards, options.plannedBytes);
    // summed only for a campaign's budget: a bigint addition per row is 1–2 % of staging a file
    const countAmounts = options.campaignId !== undefined;
    let amountTotal = 0n;

    /** Inserts rows checking each (user, rewardId): reports the rows that repeat an earlier one of this batch. */
    const insertChecked = async (batch: readonly StagedRow[]): Promise<void> => {
      // Valid rows are written even once the batch is known to be refused: repeats among them are found by SQL
      // below, so that every offending row is reported. The transaction is rolled back then.
      const inserted = await client.query<{ row_no: number }>(INSERT_ITEMS_SQL, [
        options.batchId,
        batch.map((entry) => entry.shard),
        batch.map((entry) => entry.uid),
        batch.map((entry) => entry.rewardId),
        batch.map((entry) => entry.row),
        batch.map((entry) => entry.amount),
        batch.map((entry) => entry.description),
      ]);
      if (inserted.rowCount !== batch.length) {
        // The same (uid, rewardId) twice: find the rows that were skipped and the row they repeat.
        const kept = new Set(inserted.rows.map((r) => r.row_no));
        const skipped = batch.filter((entry) => !kept.has(entry.row));
        const firsts = await client.query<{ reward_id: string; row_no: number }>(
          `select reward_id, min(row_no) as row_no from reward_batch_items where batch_id = $1 and reward_id = any($2::text[]) group by reward_id`,
          [options.batchId, skipped.map((entry) => entry.rewardId)],
        );
        const firstRow = new Map(firsts.rows.map((r) => [r.reward_id, r.row_no]));
        for (const entry of skipped) {
          report.addRow([
            {
              row: entry.row,
              field: 'rewardId',
              code: 'repeated_reward_id',
              reason: REPEAT_REASON(firstRow.get(entry.rewardId) ?? '?'),
            },
          ]);
        }
      }
    };

    /**
     * Stages a chunk with COPY (the fast path) in a savepoint; when the chunk repeats a (user, rewardId) pair the
     * COPY fails as a whole, and the chunk is inserted again row-checked (read back from its COPY text) to name the
     * repeats.
     */
    const stageChunk = async (data: Buffer[]): Promise<void> => {
      await client.query('savepoint windfall_stage');
      try {
        await copyIn(client, COPY_ITEMS_SQL, data);
        await client.query('release savepoint windfall_stage');
        // sent whole (after a failed COPY a buffer may still wait for the socket: those are left to the collector)
        copy.recycle(data);
      } catch (error) {
        if (!isUniqueViolation(error)) throw error;
        await client.query('rollback to savepoint windfall_stage');
        await client.query('release savepoint windfall_stage');
        const rows = rowsOfCopyText(data);
        for (let at = 0; at < rows.length; at += STAGE_ROWS_PER_INSERT)
          await insertChecked(rows.slice(at, at + STAGE_ROWS_PER_INSERT));
      }
    };

    // One chunk is staged while the next one is read and validated.
    const flush = async (): Promise<void> => {
      if (chunkCount === 0) return;
      await staging;
      staging = stageChunk(copy.take());
      staging.catch(() => undefined); // awaited at the next flush or at the end
      chunkCount = 0;
    };

    for await (const record of records) {
      const reward = reader.accept(record);
      if (!reward) continue;
      const description = reward.description;
      digest.add(reward);
      if (countAmounts) amountTotal += reward.amount;
      seen.add(reward.rewardId);
      const shard = shardOf(reward.uid, options.shards);
      planner.add(shard, reward.uid);
      copy.row(
        `${batchText}\t${shard}\t${copyText(reward.uid)}\t${copyText(reward.rewardId)}\t${record.row}\t${reward.amount}\t${description === null ? '\\N' : copyText(description)}`,
      );
      chunkCount += 1;
      if (chunkCount >= chunkRows(reader.rowsRead)) await flush();
    }
    await flush();
    options.onRowsRead?.();
    await staging;

    if (seen.maybeRepeats) {
      const repeats = (
        await client.query<{ row_no: number; first_row: number; total: number }>(
          withDeadline(
            { text: FIND_REPEATS_SQL, values: [options.batchId, LISTED_ERRORS] },
            wholeBatchDeadlineMs(reader.rowsRead),
          ),
        )
      ).rows;
      for (const repeat of repeats) {
        report.addRow([
          {
            row: repeat.row_no,
            field: 'rewardId',
            code: 'repeated_reward_id',
            reason: REPEAT_REASON(repeat.first_row),
          },
        ]);
      }
      report.addCounted('rewardId', 'repeated_reward_id', (repeats[0]?.total ?? 0) - repeats.length);
    }
    reader.refuseIfInvalid();

    if (planner.planned) {
      // counted while reading: PostgreSQL need not read the batch again (~130 ms per 100,000 rows saved)
      // (with each chunk's users, so that its job need not group the staged rows by user either)
      await client.query(
        INSERT_PLANNED_CHUNKS_SQL,
        plannedChunkParameters(options.batchId, planner.plan(options.chunkSize)),
      );
    } else {
      // the rows were just written, so the planner guesses their number low and sorts them after a bitmap scan; read
      // in the primary key's order instead (already by shard and uid): 253 → 129 ms for 100,000 rows
      await client.query('set local enable_bitmapscan = off');
      await client.query(
        withDeadline(
          { text: PLAN_CHUNKS_SQL, values: [options.batchId, options.chunkSize] },
          wholeBatchDeadlineMs(reader.rowsRead),
        ),
      );
    }
    // last, so that the campaign's row stays locked only from here to the commit
    if (options.campaignId !== undefined) await reserveBudget(client, options.campaignId, options.batchId, amountTotal);
    const updated = await client.query(
      `update reward_batches b set
         total = $3,
         amount_total = $4,
         users = (select coalesce(sum(users), 0) from reward_chunks where batch_id = $1),
         chunks = (select count(*) from reward_chunks where batch_id = $1),
         content_digest = $2
       where batch_id = $1 returning *`,
      [options.batchId, digest.value(), reader.rowsRead, countAmounts ? amountTotal.toString() : null],
    );
    await client.query('commit');
    return batchRow(updated.rows[0] as Record<string, unknown>, true);
  } catch (error) {
    if (isSilentConnection(error)) {
      // nothing more goes through a connection gone silent (a rollback would wait in vain): it is dropped, and the
      // server ends the transaction with it
      release(error as Error);
      throw error;
    }
    // A row can be refused (over maxRows, an unreadable body) while the chunk before it is being staged, between
    // its statements: a rollback sent then would run before the chunk's COPY, which would then commit on its own,
    // on a connection already back in the pool. Let it finish first.
    await staging.catch(() => undefined);
    await client.query('rollback').catch(() => undefined);
    // a refusal leaves the connection sound; anything else may have broken it
    release(
      error instanceof BatchValidationError || error instanceof BudgetExceededError ? undefined : (error as Error),
    );
    throw error;
  } finally {
    release();
  }
}
