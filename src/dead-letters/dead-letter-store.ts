import type { Selectable } from 'kysely';
import type pg from 'pg';
import { DEAD_LETTER_REASONS } from '../db/stored-values.js';
import { queryBuilder, runQuery } from '../db/query-builder.js';
import type { DeadLetterReason, DeadLettersTable, DeadLetterState, StoredReward } from '../db/schema.js';

/** A dead-letter entry: one user's rewards that one job (or replay) could not apply, and why. */
export interface DeadLetterEntry {
  readonly id: string;
  readonly batchId: string;
  readonly uid: string;
  readonly shard: number;
  readonly rewards: readonly StoredReward[];
  readonly reason: DeadLetterReason;
  readonly error: string;
  readonly attempts: number;
  readonly failedAt: string;
  readonly state: DeadLetterState;
  /** The chunk job that dead-lettered it, when it came from one. */
  readonly chunkNo: number | null;
  /** The entry whose replay dead-lettered it, when it came from a replay. */
  readonly replayOf: string | null;
  readonly replayedAt: string | null;
}

/** Selects entries: by ids, or by filter (all open ones when empty). */
export interface DeadLetterFilter {
  readonly ids?: readonly string[];
  readonly reason?: DeadLetterReason;
  readonly batchId?: string;
  /** Default `open`. */
  readonly state?: DeadLetterState | 'any';
  /** Default 1000. */
  readonly limit?: number;
}

/** The columns of a `dead_letters` row an entry is made of, as node-pg reads them. */
export type DeadLetterRow = Pick<
  Selectable<DeadLettersTable>,
  | 'id'
  | 'batch_id'
  | 'uid'
  | 'shard'
  | 'rewards'
  | 'reason'
  | 'error'
  | 'attempts'
  | 'failed_at'
  | 'state'
  | 'chunk_no'
  | 'replay_of'
  | 'replayed_at'
>;

/** A row as the entry Windfall answers with. */
export function toEntry(row: DeadLetterRow): DeadLetterEntry {
  return {
    id: row.id.toString(),
    batchId: row.batch_id,
    uid: row.uid,
    shard: row.shard,
    rewards: row.rewards,
    reason: row.reason,
    error: row.error,
    attempts: row.attempts,
    failedAt: row.failed_at.toISOString(),
    state: row.state,
    chunkNo: row.chunk_no,
    replayOf: row.replay_of === null ? null : row.replay_of.toString(),
    replayedAt: row.replayed_at ? row.replayed_at.toISOString() : null,
  };
}

type Db = Pick<pg.Pool, 'query'>;

/** Entries matching the filter, oldest first. */
export async function listDeadLetters(db: Db, filter: DeadLetterFilter = {}): Promise<DeadLetterEntry[]> {
  const { db: qb, sql } = await queryBuilder();
  let query = qb.selectFrom('dead_letters').selectAll();
  if (filter.ids) {
    const ids = sql<bigint[]>`${sql.val(filter.ids)}::bigint[]`;
    query = query.where((eb) => eb('id', '=', eb.fn.any(ids)));
  }
  if (filter.reason) query = query.where('reason', '=', filter.reason);
  if (filter.batchId) query = query.where('batch_id', '=', filter.batchId);
  const state = filter.state ?? (filter.ids ? 'any' : 'open');
  if (state !== 'any') query = query.where('state', '=', state);
  const rows = await runQuery(db, query.orderBy('id').limit(filter.limit ?? 1000));
  return rows.map(toEntry);
}

/** One entry by id (any state), or null. */
export async function getDeadLetter(db: Db, id: string): Promise<DeadLetterEntry | null> {
  if (!/^\d{1,18}$/.test(id)) return null;
  const { db: qb } = await queryBuilder();
  const [row] = await runQuery(db, qb.selectFrom('dead_letters').selectAll().where('id', '=', BigInt(id)));
  return row ? toEntry(row) : null;
}

/** Where an entry ended after {@link markReplayed}: replayed (now or earlier), purged, or no such entry. */
export type ReplayMarkOutcome = 'replayed' | 'purged' | 'missing';

/**
 * Marks an open entry replayed (it leaves the dead-letter queue) and answers the state the entry ends in. Purge
 * moves only `open` → `purged` and this only `open` → `replayed`, both atomically, so exactly one of them wins
 * (a replay job's claim, `claimEntry` in db/fences.ts, moves `open` or `replayed` on, never `purged`):
 * `purged` means a purge came first and the replay must not take effect. Two statements, not one: the update
 * re-reads a row changed by a concurrent purge, but a select in the same statement would still see the old row.
 */
export async function markReplayed(db: Db, id: string): Promise<ReplayMarkOutcome> {
  const marked = await db.query(
    `update dead_letters set state = 'replayed', replayed_at = coalesce(replayed_at, now()) where id = $1 and state = 'open'`,
    [id],
  );
  if (marked.rowCount === 1) return 'replayed';
  // not open any more: its state is final (replayed or purged) and this newer statement sees it
  const { rows } = await db.query<{ state: DeadLetterState }>('select state from dead_letters where id = $1', [id]);
  const state = rows[0]?.state;
  if (state === 'replayed' || state === 'purged') return state;
  return 'missing';
}

/** Open entries and the rewards inside them, per reason (every reason present, 0 when none). */
export async function countOpenDeadLetters(
  db: Db,
): Promise<Record<DeadLetterReason, { entries: number; rewards: number }>> {
  const { db: qb, sql } = await queryBuilder();
  const rows = await runQuery(
    db,
    qb
      .selectFrom('dead_letters')
      .where('state', '=', 'open')
      .groupBy('reason')
      .select((eb) => [
        'reason',
        eb.cast<number>(eb.fn.countAll(), 'integer').as('entries'),
        eb.cast<number>(eb.fn.coalesce(eb.fn.sum('reward_count'), sql.lit(0)), 'integer').as('rewards'),
      ]),
  );
  const counts = Object.fromEntries(
    DEAD_LETTER_REASONS.map((reason) => [reason, { entries: 0, rewards: 0 }]),
  ) as Record<DeadLetterReason, { entries: number; rewards: number }>;
  for (const row of rows) counts[row.reason] = { entries: row.entries, rewards: row.rewards };
  return counts;
}

/** Marks open entries purged; they stay on record (and count as dead-lettered) but leave the queue. */
export async function purgeDeadLetters(db: Db, filter: DeadLetterFilter): Promise<string[]> {
  const open = await listDeadLetters(db, { ...filter, state: 'open', limit: filter.limit ?? 1_000_000 });
  if (open.length === 0) return [];
  const { rows } = await db.query<{ id: bigint }>(
    `update dead_letters set state = 'purged', purged_at = now() where id = any($1::bigint[]) and state = 'open' returning id`,
    [open.map((entry) => entry.id)],
  );
  return rows.map((row) => row.id.toString());
}
