import { queryBuilder, runQuery } from '../db/query-builder.js';
import type { BatchStatus } from '../db/schema.js';
import type { BatchEventState, BatchEventType } from '../db/stored-values.js';
import type { Queryable } from '../db/queryable.js';

/** A batch status to store, with the counts its event (if it calls for one) reports. */
export interface StatusWithEvent {
  readonly batchId: string;
  readonly status: BatchStatus;
  /** The event to record with it; null writes the status alone. */
  readonly type: BatchEventType | null;
  readonly applied: number;
  readonly duplicate: number;
  readonly deadLettered: number;
  readonly reverted: number;
  /** Rewards the cancel left unsettled (in a `batch.cancelled` event's data). Default 0. */
  readonly cancelled?: number;
  /** True: write only when the stored status differs (a refresh after a job); false: always (a revert). */
  readonly onlyIfChanged: boolean;
}

/** An event just recorded. */
export interface RecordedEvent {
  readonly id: string;
  readonly createdAt: Date;
}

// One statement, so the status and its event are written together or not at all: the event is recorded when the
// status write happens and no event of its type exists for the batch yet (one per batch and type).
const STATUS_WITH_EVENT_SQL = `
with changed as (
  update reward_batches b set status = $2, updated_at = now()
  where b.batch_id = $1 and (not $3::boolean or b.status is distinct from $2)
  returning b.batch_id, b.status, b.total, b.campaign_id
)
insert into batch_events (batch_id, type, data)
select c.batch_id, $4,
  jsonb_build_object('batchId', c.batch_id, 'campaignId', c.campaign_id, 'status', c.status, 'total', c.total,
                     'applied', $5::int, 'duplicate', $6::int, 'deadLettered', $7::int)
  || case when $4 = 'batch.reverted' then jsonb_build_object('reverted', $8::int) else '{}'::jsonb end
  || case when $4 = 'batch.cancelled' then jsonb_build_object('cancelled', $9::int) else '{}'::jsonb end
from changed c
on conflict (batch_id, type) do nothing
returning id, created_at`;

/**
 * Stores a batch's status and, when `type` is given, records its event in the same statement. Returns the event
 * when one was recorded now (not when the status did not change, or the batch has its event of that type already).
 */
export async function writeStatusWithEvent(db: Queryable, write: StatusWithEvent): Promise<RecordedEvent | null> {
  if (write.type === null) {
    await db.query(
      `update reward_batches set status = $2, updated_at = now() where batch_id = $1 and (not $3::boolean or status is distinct from $2)`,
      [write.batchId, write.status, write.onlyIfChanged],
    );
    return null;
  }
  const { rows } = await db.query<{ id: string; created_at: Date }>(STATUS_WITH_EVENT_SQL, [
    write.batchId,
    write.status,
    write.onlyIfChanged,
    write.type,
    write.applied,
    write.duplicate,
    write.deadLettered,
    write.reverted,
    write.cancelled ?? 0,
  ]);
  const row = rows[0];
  return row ? { id: row.id, createdAt: row.created_at } : null;
}

/** One event and its delivery, as `windfall events` lists it. */
export interface EventDelivery {
  readonly id: string;
  readonly type: BatchEventType;
  readonly batchId: string;
  readonly state: BatchEventState;
  /** Requests sent so far (one cut short by a worker's death counts). */
  readonly attempts: number;
  /** The last failed attempt's error (kept after a later success), or null. */
  readonly lastError: string | null;
  readonly lastAttemptAt: string | null;
  readonly createdAt: string;
  readonly deliveredAt: string | null;
}

/** Filters of {@link listEvents}. */
export interface EventFilter {
  readonly batchId?: string;
  readonly state?: BatchEventState;
  /** Most events. Default 1000. */
  readonly limit?: number;
}

/** Events, newest first. */
export async function listEvents(db: Queryable, filter: EventFilter = {}): Promise<EventDelivery[]> {
  const { db: qb } = await queryBuilder();
  let query = qb
    .selectFrom('batch_events')
    .select([
      'id',
      'type',
      'batch_id',
      'state',
      'attempts',
      'last_error',
      'last_attempt_at',
      'created_at',
      'delivered_at',
    ]);
  if (filter.batchId !== undefined) query = query.where('batch_id', '=', filter.batchId);
  if (filter.state !== undefined) query = query.where('state', '=', filter.state);
  const rows = await runQuery(
    db,
    query
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(filter.limit ?? 1000),
  );
  return rows.map((row) => ({
    id: row.id,
    type: row.type,
    batchId: row.batch_id,
    state: row.state,
    attempts: row.attempts,
    lastError: row.last_error,
    lastAttemptAt: row.last_attempt_at?.toISOString() ?? null,
    createdAt: row.created_at.toISOString(),
    deliveredAt: row.delivered_at?.toISOString() ?? null,
  }));
}

/** A pending event about to be sent. */
export interface EventToSend {
  readonly id: string;
  readonly type: BatchEventType;
  readonly createdAt: Date;
  readonly data: Record<string, unknown>;
  /** This attempt's number (1 for the first). */
  readonly attempt: number;
}

/**
 * Counts an attempt of a pending event before its request is sent (so a request cut short by a killed worker counts)
 * and returns what to send; null when the event is delivered or failed already, or unknown.
 */
export async function startAttempt(db: Queryable, eventId: string): Promise<EventToSend | null> {
  const { rows } = await db.query<{
    id: string;
    type: BatchEventType;
    created_at: Date;
    data: Record<string, unknown>;
    attempts: number;
  }>(
    `update batch_events set attempts = attempts + 1, last_attempt_at = now()
     where id = $1 and state = 'pending' returning id, type, created_at, data, attempts`,
    [eventId],
  );
  const row = rows[0];
  return row ? { id: row.id, type: row.type, createdAt: row.created_at, data: row.data, attempt: row.attempts } : null;
}

/** Marks a pending event delivered. */
export async function markDelivered(db: Queryable, eventId: string): Promise<void> {
  await db.query(
    `update batch_events set state = 'delivered', delivered_at = now() where id = $1 and state = 'pending'`,
    [eventId],
  );
}

/** Records a failed attempt's error; with `giveUp`, the event is `failed` and never sent again. */
export async function recordFailedAttempt(
  db: Queryable,
  eventId: string,
  error: string,
  giveUp: boolean,
): Promise<void> {
  await db.query(
    `update batch_events set last_error = $2, state = case when $3::boolean then 'failed' else state end
     where id = $1 and state = 'pending'`,
    [eventId, error.slice(0, 2000), giveUp],
  );
}

/** Pending events, oldest first (for re-adding their delivery jobs). */
export async function pendingEvents(db: Queryable, limit = 10_000): Promise<RecordedEvent[]> {
  const { rows } = await db.query<{ id: string; created_at: Date }>(
    `select id, created_at from batch_events where state = 'pending' order by created_at limit $1`,
    [limit],
  );
  return rows.map((row) => ({ id: row.id, createdAt: row.created_at }));
}
