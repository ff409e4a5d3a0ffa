import { queryBuilder, runQuery } from '../db/query-builder.js';
import type { BatchPriority, BatchStatus } from '../db/schema.js';
import type { EventSink } from '../events/event-publisher.js';
import { writeStatusWithEvent } from '../events/event-store.js';
import { REVERT_ID_PREFIX } from '../rewards/field-rules.js';
import type { Queryable } from '../db/queryable.js';

/** The answer of `windfall batch <id>`: every reward of the batch is in exactly one of the five counts. */
export interface BatchReport {
  readonly batchId: string;
  readonly status: BatchStatus;
  readonly total: number;
  /** Credited by this batch (once). */
  readonly applied: number;
  /** Already credited by another batch or call: not credited again. */
  readonly duplicate: number;
  /** In the dead-letter queue (open or purged entries), not applied. */
  readonly deadLettered: number;
  /** Not settled yet. */
  readonly pending: number;
  /** Not settled when the batch was cancelled (`windfall batch cancel`): never paid by it. 0 unless cancelled. */
  readonly cancelled: number;
  /** Applied rewards debited back by `windfall batch revert` (0 unless the batch was reverted). */
  readonly reverted: number;
  readonly createdAt: string;
  /** The campaign whose budget pays for it, or null. */
  readonly campaignId: string | null;
  /** Its lane: `high`, `normal` or `low`. */
  readonly priority: BatchPriority;
}

/**
 * Derives the status from the counts: nothing settled → pending; some → processing; all → completed (with failures
 * when any is dead-lettered); once cancelled, cancelled; once reverted (`reverted` > 0, or a revert recorded on the
 * batch): reverted when every applied reward was debited back, partially_reverted otherwise.
 */
function deriveStatus(
  total: number,
  applied: number,
  duplicate: number,
  deadLettered: number,
  reverted = 0,
  revertStarted = false,
  cancelled = false,
): BatchStatus {
  if (reverted > 0 || revertStarted) return reverted >= applied ? 'reverted' : 'partially_reverted';
  if (cancelled) return 'cancelled';
  const settled = applied + duplicate + deadLettered;
  if (settled >= total) return deadLettered > 0 ? 'completed_with_failures' : 'completed';
  return settled === 0 ? 'pending' : 'processing';
}

/**
 * The batch's counts and status, or null when no batch has that id. The counts are derived from the ledger itself,
 * so they cannot drift: applied = ledger entries written for this batch; duplicate = rewards found already applied
 * elsewhere; dead-lettered = rewards of open or purged dead-letter entries that are neither.
 */
export async function getBatchReport(db: Queryable, batchId: string): Promise<BatchReport | null> {
  return (await readBatchReports(db, { batchId }))[0]?.report ?? null;
}

/** A place in the console's list of batches (newest first): the batch a page ends with. */
export interface BatchCursor {
  /** Its creation time in microseconds since 1970, as digits (exact, unlike a JavaScript date). */
  readonly createdAtUs: string;
  readonly batchId: string;
}

/** Which batches the console's list shows, newest first (by creation time, then id). */
export interface BatchListFilter {
  /** Only batches with this stored status. Default: any. */
  readonly status?: BatchStatus;
  /** Only batches whose id starts with this. */
  readonly batchIdPrefix?: string;
  /**
   * Only batches that credited or debited this user (the ledger, by uid) or hold a dead-letter entry of theirs; a
   * reward of theirs not settled yet is found by its rewardId instead.
   */
  readonly uid?: string;
  /** Only batches holding this rewardId (migration 0009's index). */
  readonly rewardId?: string;
  /** Only batches after this one (the last of the previous page). Default: from the newest. */
  readonly after?: BatchCursor;
  /** Most batches. Default 100. */
  readonly limit?: number;
}

/** A page of the console's list: its reports, and where the next page starts (null when none follows). */
export interface BatchListPage {
  readonly reports: BatchReport[];
  readonly next: BatchCursor | null;
}

/** `text` for a LIKE pattern that matches it literally (backslash is the escape). */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, (char) => `\\${char}`);
}

/** A page of batch reports, newest first, as the filter selects them: one statement. */
export async function listBatchReports(db: Queryable, filter: BatchListFilter = {}): Promise<BatchListPage> {
  const limit = filter.limit ?? 100;
  const rows = await readBatchReports(db, { list: { ...filter, limit: limit + 1 } });
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    reports: page.map((row) => row.report),
    next: rows.length > limit && last ? { createdAtUs: last.createdAtUs, batchId: last.report.batchId } : null,
  };
}

/** The reports of one batch, or of a list of batches (each with its place in the list). */
async function readBatchReports(
  db: Queryable,
  which: { readonly batchId: string } | { readonly list: BatchListFilter & { readonly limit: number } },
): Promise<{ report: BatchReport; createdAtUs: string }[]> {
  const { db: qb, sql } = await queryBuilder();
  let query = qb
    .selectFrom('reward_batches as b')
    .select([
      'b.batch_id',
      'b.total',
      'b.created_at',
      'b.campaign_id',
      'b.priority',
      'b.status as stored_status',
      'b.cancelled_at',
    ])
    .select(sql<string>`(extract(epoch from b.created_at) * 1000000)::bigint::text`.as('created_us'))
    .select((eb) => [
      eb
        .cast<number>(
          eb
            .selectFrom('ledger_entries as l')
            .whereRef('l.batch_id', '=', 'b.batch_id')
            .where('l.kind', '=', 'reward')
            .select((count) => count.fn.countAll().as('n')),
          'integer',
        )
        .as('applied'),
      eb
        .cast<number>(
          eb
            .selectFrom('ledger_entries as l')
            .whereRef('l.batch_id', '=', 'b.batch_id')
            .where('l.kind', '=', 'debit')
            .where('l.operation_id', 'like', `${REVERT_ID_PREFIX}%`)
            .select((count) => count.fn.countAll().as('n')),
          'integer',
        )
        .as('reverted'),
      eb
        .cast<number>(
          eb
            .selectFrom('reward_duplicates as r')
            .whereRef('r.batch_id', '=', 'b.batch_id')
            .select((count) => count.fn.countAll().as('n')),
          'integer',
        )
        .as('duplicate'),
      // the distinct rewards inside the batch's entries, as SQL: a lateral jsonb expansion and two anti-joins
      sql<number>`(select count(distinct e.reward->>'rewardId')
         from dead_letters d cross join lateral jsonb_array_elements(d.rewards) as e(reward)
        where d.batch_id = b.batch_id and d.state in ('open', 'purged')
          and not exists (select 1 from ledger_entries l where l.operation_id = e.reward->>'rewardId' and l.batch_id = b.batch_id)
          and not exists (select 1 from reward_duplicates r where r.batch_id = b.batch_id and r.reward_id = e.reward->>'rewardId')
      )::int`.as('dead_lettered'),
    ]);
  if ('batchId' in which) query = query.where('b.batch_id', '=', which.batchId);
  else {
    const list = which.list;
    if (list.status !== undefined) query = query.where('b.status', '=', list.status);
    if (list.batchIdPrefix !== undefined)
      query = query.where(sql<boolean>`b.batch_id like ${sql.val(`${likeLiteral(list.batchIdPrefix)}%`)} escape '\\'`);
    if (list.uid !== undefined) {
      const uid = list.uid;
      query = query.where((eb) =>
        eb.or([
          eb(
            'b.batch_id',
            'in',
            eb
              .selectFrom('ledger_entries as lu')
              .select('lu.batch_id')
              .where('lu.uid', '=', uid)
              .where('lu.batch_id', 'is not', null),
          ),
          eb('b.batch_id', 'in', eb.selectFrom('dead_letters as du').select('du.batch_id').where('du.uid', '=', uid)),
        ]),
      );
    }
    if (list.rewardId !== undefined) {
      const rewardId = list.rewardId;
      query = query.where('b.batch_id', 'in', (eb) =>
        eb.selectFrom('reward_batch_items as ri').select('ri.batch_id').where('ri.reward_id', '=', rewardId),
      );
    }
    if (list.after !== undefined) {
      const { createdAtUs, batchId } = list.after;
      query = query.where(
        sql<boolean>`((extract(epoch from b.created_at) * 1000000)::bigint < ${sql.val(createdAtUs)}::bigint
          or ((extract(epoch from b.created_at) * 1000000)::bigint = ${sql.val(createdAtUs)}::bigint
              and b.batch_id > ${sql.val(batchId)}))`,
      );
    }
    query = query.orderBy('b.created_at', 'desc').orderBy('b.batch_id').limit(list.limit);
  }
  const rows = await runQuery(db, query);
  return rows.map((row) => {
    const unsettled = Math.max(0, row.total - row.applied - row.duplicate - row.dead_lettered);
    const cancelled = row.cancelled_at !== null;
    return {
      createdAtUs: row.created_us,
      report: {
        batchId: row.batch_id,
        status: deriveStatus(
          row.total,
          row.applied,
          row.duplicate,
          row.dead_lettered,
          row.reverted,
          row.stored_status === 'reverted' || row.stored_status === 'partially_reverted',
          cancelled,
        ),
        total: row.total,
        applied: row.applied,
        duplicate: row.duplicate,
        deadLettered: row.dead_lettered,
        // a cancelled batch's unsettled rewards are settled for good: cancelled, never paid (ADR 0013's fence)
        pending: cancelled ? 0 : unsettled,
        cancelled: cancelled ? unsettled : 0,
        reverted: row.reverted,
        createdAt: row.created_at.toISOString(),
        campaignId: row.campaign_id,
        priority: row.priority,
      },
    };
  });
}

/**
 * Brings `reward_batches.status` up to date once no chunk of the batch is still open. Called after a chunk or
 * a replay completes; cheap while chunks remain (one indexed probe), exact when it writes.
 *
 * With `events` (webhooks configured), the write that first makes the batch `completed` or
 * `completed_with_failures` also records its `batch.completed` event, in the same statement, and hands it to
 * `events`; a batch that has its event already (say, completed after a DLQ replay) gets no second one.
 */
export async function refreshStoredStatus(db: Queryable, batchId: string, events?: EventSink): Promise<void> {
  const open = await db.query('select 1 from reward_chunks where batch_id = $1 and completed_at is null limit 1', [
    batchId,
  ]);
  if (open.rowCount) return;
  const report = await getBatchReport(db, batchId);
  if (!report) return;
  const recorded = await writeStatusWithEvent(db, {
    batchId,
    status: report.status,
    type:
      events && (report.status === 'completed' || report.status === 'completed_with_failures')
        ? 'batch.completed'
        : null,
    applied: report.applied,
    duplicate: report.duplicate,
    deadLettered: report.deadLettered,
    reverted: report.reverted,
    onlyIfChanged: true,
  });
  if (recorded) await events?.publish(recorded);
}
