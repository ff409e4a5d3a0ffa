import type { Selectable } from 'kysely';
import { DEAD_LETTER_REASONS } from '../db/stored-values.js';
import { queryBuilder, runQuery } from '../db/query-builder.js';
import type { BatchPriority } from '../db/stored-values.js';
import type { DeadLetterReason, DeadLettersTable, DeadLetterState, StoredReward } from '../db/schema.js';
import type { Queryable } from '../db/queryable.js';

/** Rewards per entry that listing and showing entries return unless asked for more (`--rewards`, `?rewards=`). */
export const DEFAULT_REWARDS_PER_ENTRY = 100;

/**
 * Entries one step of a bulk purge or replay handles: one statement (its own transaction) and one Redis round trip
 * per shard. Memory stays flat in the number of entries; no transaction spans the whole action.
 */
export const DEAD_LETTER_PAGE_SIZE = 1000;

/** A dead-letter entry: one user's rewards that one job (or replay) could not apply, and why. */
export interface DeadLetterEntry {
  readonly id: string;
  readonly batchId: string;
  readonly uid: string;
  readonly shard: number;
  /** The entry's rewards, or the first of them (see `rewardCount`): list and show return at most the number asked for. */
  readonly rewards: readonly StoredReward[];
  /** How many rewards the entry holds (`rewards` may list fewer). */
  readonly rewardCount: number;
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

/** An entry as listed or shown: its rewards cut to the number asked for, and the amount of all of them. */
export interface ListedDeadLetter extends DeadLetterEntry {
  /** The sum of every reward of the entry (minor units, digits), listed or not. */
  readonly amount: string;
}

/** Selects entries: by ids, or by filter (all open ones when empty). */
export interface DeadLetterFilter {
  readonly ids?: readonly string[];
  readonly reason?: DeadLetterReason;
  readonly batchId?: string;
  /** Default `open` (`any` with ids). */
  readonly state?: DeadLetterState | 'any';
  /** Most entries listed. Default 1000. */
  readonly limit?: number;
  /** Only entries with a greater id (the last id of the previous page). Default: from the first. */
  readonly after?: string;
  /** Most rewards listed per entry. Default {@link DEFAULT_REWARDS_PER_ENTRY} (100). */
  readonly rewards?: number;
}

/** What a listing may select besides {@link DeadLetterFilter} (listings only: never a replay's or a purge's filter). */
export interface DeadLetterListFilter extends DeadLetterFilter {
  /** Only entries of this user (index `dead_letters_uid`, migration 0009). */
  readonly uid?: string;
  /** Only entries holding this rewardId (found through the staged rewards' index, then the entry's batch and user). */
  readonly rewardId?: string;
}

/** The columns of a `dead_letters` row an entry is made of, as node-pg reads them. */
export type DeadLetterRow = Pick<
  Selectable<DeadLettersTable>,
  | 'id'
  | 'batch_id'
  | 'uid'
  | 'shard'
  | 'rewards'
  | 'reward_count'
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
    rewardCount: row.reward_count,
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

/** The columns of an entry besides its rewards. */
const ENTRY_COLUMNS = [
  'id',
  'batch_id',
  'uid',
  'shard',
  'reward_count',
  'reason',
  'error',
  'attempts',
  'failed_at',
  'state',
  'chunk_no',
  'replay_of',
  'replayed_at',
] as const;

/** Most rewards per entry a listing may ask for (an entry may hold a whole chunk's worth of one user's rewards). */
function rewardsShown(asked: number | undefined): number {
  const rewards = asked ?? DEFAULT_REWARDS_PER_ENTRY;
  if (!Number.isSafeInteger(rewards) || rewards < 0)
    throw new RangeError(`rewards per entry must be ≥ 0, got ${rewards}`);
  return rewards;
}

/**
 * Entries matching the filter, oldest first, each with at most `filter.rewards` of its rewards (default 100) and the
 * amount of all of them: the cut is made in PostgreSQL, so an entry of 100,000 rewards costs Node no more than the
 * rewards it lists.
 */
export async function listDeadLetters(db: Queryable, filter: DeadLetterListFilter = {}): Promise<ListedDeadLetter[]> {
  const { db: qb, sql } = await queryBuilder();
  const shown = rewardsShown(filter.rewards);
  let query = qb
    .selectFrom('dead_letters as d')
    .select(ENTRY_COLUMNS.map((column) => `d.${column}` as const))
    .select([
      sql<StoredReward[]>`case when d.reward_count <= ${sql.val(shown)}::bigint then d.rewards
        else (select coalesce(jsonb_agg(t.value order by t.n), '[]'::jsonb)
              from jsonb_array_elements(d.rewards) with ordinality as t(value, n) where t.n <= ${sql.val(shown)}::bigint) end`.as(
        'rewards',
      ),
      // recorded with the entry (migration 0008): no walk through its rewards
      sql<string>`d.amount::text`.as('amount'),
    ]);
  if (filter.ids) {
    const ids = sql<bigint[]>`${sql.val(filter.ids)}::bigint[]`;
    query = query.where((eb) => eb('d.id', '=', eb.fn.any(ids)));
  }
  if (filter.reason) query = query.where('d.reason', '=', filter.reason);
  if (filter.batchId) query = query.where('d.batch_id', '=', filter.batchId);
  if (filter.uid !== undefined) query = query.where('d.uid', '=', filter.uid);
  if (filter.rewardId !== undefined) {
    const rewardId = filter.rewardId;
    query = query
      .where(
        sql<boolean>`(d.batch_id, d.uid) in (select i.batch_id, i.uid from reward_batch_items i where i.reward_id = ${sql.val(rewardId)})`,
      )
      .where(sql<boolean>`d.rewards @> jsonb_build_array(jsonb_build_object('rewardId', ${sql.val(rewardId)}::text))`);
  }
  if (filter.after !== undefined) query = query.where('d.id', '>', BigInt(filter.after));
  const state = filter.state ?? (filter.ids ? 'any' : 'open');
  if (state !== 'any') query = query.where('d.state', '=', state);
  const rows = await runQuery(db, query.orderBy('d.id').limit(filter.limit ?? 1000));
  return rows.map((row) => ({ ...toEntry(row), amount: row.amount }));
}

/** One entry by id (any state), or null; at most `rewards` of its rewards (default 100), see {@link listDeadLetters}. */
export async function getDeadLetter(
  db: Queryable,
  id: string,
  options: { readonly rewards?: number } = {},
): Promise<ListedDeadLetter | null> {
  if (!/^\d{1,18}$/.test(id)) return null;
  const [entry] = await listDeadLetters(db, {
    ids: [id],
    state: 'any',
    limit: 1,
    ...(options.rewards !== undefined ? { rewards: options.rewards } : {}),
  });
  return entry ?? null;
}

/** What a bulk purge or replay needs of an entry: never its rewards. */
export interface DeadLetterHead {
  readonly id: string;
  readonly batchId: string;
  readonly uid: string;
  readonly shard: number;
  readonly state: DeadLetterState;
  readonly rewardCount: number;
  readonly replayedAt: string | null;
  /** The lane of the entry's batch (a replay runs in it); null when the batch is not recorded. */
  readonly priority: BatchPriority | null;
  /** The entry's batch was cancelled: its entries are never replayed. */
  readonly batchCancelled: boolean;
}

/**
 * The rest of a page of entry heads after its `page` CTE: with `$1`, the batches of the page's open entries are
 * marked processing in the same statement (a replay's batch is processing before its job can run; the job brings the
 * status up to date when it ends); each row carries its batch's lane.
 */
const HEADS_PAGE_REST = `
processing as (
  update reward_batches set status = 'processing', updated_at = now()
  where $1::boolean and batch_id in (select batch_id from page where state = 'open')
    and status not in ('processing', 'cancelled', 'reverted', 'partially_reverted') and cancelled_at is null
)
select p.id::text as id, p.batch_id, p.uid, p.shard, p.state, p.reward_count, p.replayed_at, b.priority,
       b.cancelled_at is not null as batch_cancelled
from page p left join reward_batches b on b.batch_id = p.batch_id
order by p.id`;

/** A page of the entries with ids `$4` (any state) above `$3` (when not null), at most `$2`; see HEADS_PAGE_REST. */
const HEADS_OF_IDS_SQL = `
with page as (
  select id, batch_id, uid, shard, state, reward_count, replayed_at from dead_letters
  where id = any($4::bigint[]) and ($3::bigint is null or id > $3::bigint)
  order by id
  limit $2
),
${HEADS_PAGE_REST}`;

/**
 * A page of the open entries of reason `$4` and batch `$5` (when not null) with ids above `$3` (when not null), at
 * most `$2`, walked along the partial index of open entries (a page costs the same wherever it starts); see
 * HEADS_PAGE_REST.
 */
const HEADS_OF_FILTER_SQL = `
with page as (
  select id, batch_id, uid, shard, state, reward_count, replayed_at from dead_letters
  where state = 'open'
    and ($4::text is null or reason = $4::text)
    and ($5::text is null or batch_id = $5::text)
    and ($3::bigint is null or id > $3::bigint)
  order by id
  limit $2
),
${HEADS_PAGE_REST}`;

/**
 * One page of the entries a bulk action selects (ids: any state; a filter: open entries), in id order after `after`,
 * at most `size` of them, without their rewards. The next page starts after the last id of this one; a page shorter
 * than `size` is the last. `markBatchesProcessing`: see {@link HEADS_PAGE_REST} (default false).
 */
export async function pageDeadLetterHeads(
  db: Queryable,
  filter: Pick<DeadLetterFilter, 'ids' | 'reason' | 'batchId'>,
  after: string | null,
  size = DEAD_LETTER_PAGE_SIZE,
  options: { readonly markBatchesProcessing?: boolean } = {},
): Promise<DeadLetterHead[]> {
  const { rows } = await db.query<{
    id: string;
    batch_id: string;
    uid: string;
    shard: number;
    state: DeadLetterState;
    reward_count: number;
    replayed_at: Date | null;
    priority: BatchPriority | null;
    batch_cancelled: boolean | null;
  }>(
    filter.ids ? HEADS_OF_IDS_SQL : HEADS_OF_FILTER_SQL,
    filter.ids
      ? [options.markBatchesProcessing ?? false, size, after, filter.ids]
      : [options.markBatchesProcessing ?? false, size, after, filter.reason ?? null, filter.batchId ?? null],
  );
  return rows.map((row) => ({
    id: row.id,
    batchId: row.batch_id,
    uid: row.uid,
    shard: row.shard,
    state: row.state,
    rewardCount: row.reward_count,
    replayedAt: row.replayed_at ? row.replayed_at.toISOString() : null,
    priority: row.priority,
    batchCancelled: row.batch_cancelled === true,
  }));
}

/** Where an entry ended after {@link markReplayed}: replayed (now or earlier), purged, or no such entry. */
export type ReplayMarkOutcome = Exclude<DeadLetterState, 'open'> | 'missing';

/**
 * Marks an open entry replayed (it leaves the dead-letter queue) and answers the state the entry ends in. Purge
 * moves only `open` → `purged` and this only `open` → `replayed`, both atomically, so exactly one of them wins
 * (a replay job's claim, `claimEntry` in db/fences.ts, moves `open` or `replayed` on, never `purged`):
 * `purged` means a purge came first and the replay must not take effect. Two statements, not one: the update
 * re-reads a row changed by a concurrent purge, but a select in the same statement would still see the old row.
 */
export async function markReplayed(db: Queryable, id: string): Promise<ReplayMarkOutcome> {
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

/**
 * {@link markReplayed} for a page of entries (same meaning, same two statements, whatever the page's size): marks the
 * open ones replayed and answers, per id, the state each entry ends in.
 */
export async function markReplayedMany(db: Queryable, ids: readonly string[]): Promise<Map<string, ReplayMarkOutcome>> {
  const outcomes = new Map<string, ReplayMarkOutcome>();
  if (ids.length === 0) return outcomes;
  const marked = await db.query<{ id: string }>(
    `update dead_letters set state = 'replayed', replayed_at = coalesce(replayed_at, now())
     where id = any($1::bigint[]) and state = 'open' returning id::text as id`,
    [ids],
  );
  for (const row of marked.rows) outcomes.set(row.id, 'replayed');
  const rest = ids.filter((id) => !outcomes.has(id));
  if (rest.length === 0) return outcomes;
  // not open any more: their states are final (replayed or purged) and this newer statement sees them
  const { rows } = await db.query<{ id: string; state: DeadLetterState }>(
    'select id::text as id, state from dead_letters where id = any($1::bigint[])',
    [rest],
  );
  const states = new Map(rows.map((row) => [row.id, row.state]));
  for (const id of rest) {
    const state = states.get(id);
    outcomes.set(id, state === 'replayed' || state === 'purged' ? state : 'missing');
  }
  return outcomes;
}

/** Open entries and the rewards inside them, per reason (every reason present, 0 when none). */
export async function countOpenDeadLetters(
  db: Queryable,
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

/**
 * One page of a purge: the open entries among ids `$1` (or all when null) of reason `$2` and batch `$3` (when not
 * null) with ids above `$4`, at most `$5`, marked purged; the ids purged, the entries looked at, the page's last id.
 */
const PURGE_PAGE_SQL = `
with page as (
  select id from dead_letters
  where state = 'open'
    and ($1::bigint[] is null or id = any($1::bigint[]))
    and ($2::text is null or reason = $2::text)
    and ($3::text is null or batch_id = $3::text)
    and ($4::bigint is null or id > $4::bigint)
  order by id
  limit $5
),
purged as (
  update dead_letters d set state = 'purged', purged_at = now()
  from page where d.id = page.id and d.state = 'open'
  returning d.id
)
select coalesce((select array_agg(id::text order by id) from purged), '{}') as purged,
       (select count(*)::int from page) as scanned,
       (select max(id)::text from page) as last`;

/** What one page of a purge did. */
export interface PurgedPage {
  /** Ids of the entries purged now, in order. */
  readonly purged: string[];
  /** Entries the page looked at (open when it read them; some may have been replayed since). */
  readonly scanned: number;
  /** The page's last id (the next page starts after it); null when the page was empty. */
  readonly last: string | null;
}

/**
 * Marks one page of open entries purged, in one statement: the open entries of `filter` (ids, or reason and batch)
 * after `after`, at most `size`. They stay on record (and count as dead-lettered) but leave the queue. Purge moves
 * only `open` → `purged` (see {@link markReplayed}): an entry replayed meanwhile is left alone.
 */
export async function purgeDeadLetterPage(
  db: Queryable,
  filter: Pick<DeadLetterFilter, 'ids' | 'reason' | 'batchId'>,
  after: string | null,
  size = DEAD_LETTER_PAGE_SIZE,
): Promise<PurgedPage> {
  const { rows } = await db.query<{ purged: string[]; scanned: number; last: string | null }>(PURGE_PAGE_SQL, [
    filter.ids ?? null,
    filter.ids ? null : (filter.reason ?? null),
    filter.ids ? null : (filter.batchId ?? null),
    after,
    size,
  ]);
  const row = rows[0]!;
  return { purged: row.purged, scanned: row.scanned, last: row.last };
}

/**
 * Marks open entries purged (every page of them; see {@link purgeDeadLetterPage}) and returns their ids. For a
 * selection of any size prefer the pages: this returns every id.
 */
export async function purgeDeadLetters(db: Queryable, filter: DeadLetterFilter): Promise<string[]> {
  const purged: string[] = [];
  for (let after: string | null = null; ;) {
    const page = await purgeDeadLetterPage(db, filter, after);
    purged.push(...page.purged);
    if (page.scanned < DEAD_LETTER_PAGE_SIZE || page.last === null) return purged;
    after = page.last;
  }
}
