import { queryBuilder, runQuery } from '../db/query-builder.js';
import type { BatchStatus, DeadLetterReason, DeadLetterState } from '../db/schema.js';
import { REVERT_ID_PREFIX } from '../rewards/field-rules.js';
import type { Queryable } from '../db/queryable.js';

/**
 * Where one reward of one batch stands (CONTRACT, `windfall reward`): not settled yet, credited by this batch,
 * already credited elsewhere, in an open dead-letter entry, in a purged one, or credited and then debited back by a
 * revert of the batch, or never settled by a batch that was cancelled.
 */
export const REWARD_STATES = [
  'pending',
  'applied',
  'duplicate',
  'dead_lettered',
  'purged',
  'cancelled',
  'reverted',
] as const;
export type RewardState = (typeof REWARD_STATES)[number];

/** What the database says about one reward of one batch, from which {@link deriveRewardState} names its state. */
export interface RewardFacts {
  /** The batch's stored status (`reward_batches.status`). */
  readonly batchStatus: BatchStatus;
  /** The batch was cancelled (`windfall batch cancel`). */
  readonly batchCancelled: boolean;
  /** This batch wrote the reward's ledger entry (kind `reward`, `operation_id` = the rewardId). */
  readonly appliedHere: boolean;
  /** This batch debited it back (`revert:<rewardId>`). */
  readonly reverted: boolean;
  /** Recorded as a duplicate of this batch: the rewardId had been credited by another batch or operation. */
  readonly duplicate: boolean;
  /** The state of the newest dead-letter entry of this batch that holds the reward; null when none does. */
  readonly deadLetterState: DeadLetterState | null;
}

/**
 * The state of a reward from its facts, the first that holds: applied here (then `reverted` once debited back),
 * `duplicate`, the newest dead-letter entry holding it `open` (`dead_lettered`) or `purged` (a revert closes the
 * batch's open entries as purged too), `cancelled` when none of these holds for a reward of a cancelled batch (it is
 * never paid by it), else `pending` — never settled, or its entry replayed and the replay not settled yet (a replayed
 * reward that the replay applied is `applied`).
 */
export function deriveRewardState(facts: RewardFacts): RewardState {
  if (facts.appliedHere) return facts.reverted ? 'reverted' : 'applied';
  if (facts.duplicate) return 'duplicate';
  if (facts.deadLetterState === 'open') return 'dead_lettered';
  if (facts.deadLetterState === 'purged') return 'purged';
  return facts.batchCancelled ? 'cancelled' : 'pending';
}

/** One batch holding the rewardId, and the reward's state in it. */
export interface RewardInBatch {
  readonly batchId: string;
  readonly state: RewardState;
}

/** Most batches {@link RewardReport.batches} lists. */
export const MAX_BATCHES_LISTED = 100;

/** The answer of `windfall reward <rewardId>` and `GET /v1/rewards/:rewardId`. */
export interface RewardReport {
  readonly rewardId: string;
  /**
   * The batch answered for: the one that applied the reward when a batch did; otherwise the newest batch that holds
   * it (by creation time, then batchId).
   */
  readonly batchId: string;
  readonly uid: string;
  /** Minor units, a string of digits. */
  readonly amount: string;
  readonly state: RewardState;
  /**
   * The ledger entry that credited the rewardId: this batch's (`applied`, `reverted`) or, for a `duplicate`, the
   * earlier credit by another batch or operation; null otherwise.
   */
  readonly ledgerEntryId: string | null;
  /** When that entry was written (ISO 8601), or null. */
  readonly appliedAt: string | null;
  /**
   * The newest dead-letter entry of the batch that holds the reward, whatever its state (`dead_lettered`, `purged`;
   * for a reward replayed then applied, the entry it was replayed from), or null when it was never dead-lettered.
   */
  readonly deadLetterId: string | null;
  /** That entry's reason, or null. */
  readonly reason: DeadLetterReason | null;
  /** When the batch's revert debited the reward back (`reverted`), or null. */
  readonly revertedAt: string | null;
  /**
   * Every batch holding the rewardId (a reward enqueued again under other batchIds), the answered one first, then
   * newest first; at most {@link MAX_BATCHES_LISTED}.
   */
  readonly batches: readonly RewardInBatch[];
}

/**
 * Where a reward stands, or null when no batch holds the rewardId. One statement: the batches holding the rewardId
 * are found by `reward_batch_items_reward_id` (migration 0009), and each of them is read by primary keys and
 * indexes (the ledger's `operation_id`, `reward_duplicates`, `dead_letters (batch_id, uid)`): its cost does not grow
 * with the number of staged rewards.
 */
export async function getRewardReport(db: Queryable, rewardId: string): Promise<RewardReport | null> {
  const rows = await runQuery(db, await rewardLookupQuery(rewardId));
  const views = rows.map((row) => {
    const state = deriveRewardState({
      batchStatus: row.batch_status,
      batchCancelled: row.batch_cancelled_at !== null,
      appliedHere: row.applied_here,
      reverted: row.reverted_at !== null,
      duplicate: row.duplicate,
      deadLetterState: row.dead_letter_state,
    });
    const credited = state === 'applied' || state === 'reverted' || state === 'duplicate';
    return {
      rewardId,
      batchId: row.batch_id,
      uid: row.uid,
      amount: row.amount,
      state,
      ledgerEntryId: credited && row.ledger_id !== null ? row.ledger_id.toString() : null,
      appliedAt: credited && row.ledger_at !== null ? row.ledger_at.toISOString() : null,
      deadLetterId: row.dead_letter_id === null ? null : row.dead_letter_id.toString(),
      reason: row.dead_letter_reason,
      revertedAt: state === 'reverted' && row.reverted_at !== null ? row.reverted_at.toISOString() : null,
    };
  });
  const [answered] = views;
  if (!answered) return null;
  return { ...answered, batches: views.map((view) => ({ batchId: view.batchId, state: view.state })) };
}

/**
 * The statement of {@link getRewardReport}: a row per batch holding the rewardId, the batch that applied it first,
 * then newest first (exported so that a test can check its plan).
 */
export async function rewardLookupQuery(rewardId: string) {
  const { db: qb, sql } = await queryBuilder();
  return (
    qb
      .selectFrom('reward_batch_items as i')
      .innerJoin('reward_batches as b', 'b.batch_id', 'i.batch_id')
      // operation_id is unique: at most one entry credited the rewardId, by this batch or elsewhere
      .leftJoin('ledger_entries as l', 'l.operation_id', 'i.reward_id')
      .leftJoin('ledger_entries as r', (join) =>
        join
          .on('r.operation_id', '=', sql<string>`${REVERT_ID_PREFIX} || i.reward_id`)
          .onRef('r.batch_id', '=', 'i.batch_id'),
      )
      .leftJoin('reward_duplicates as u', (join) =>
        join.onRef('u.batch_id', '=', 'i.batch_id').onRef('u.reward_id', '=', 'i.reward_id'),
      )
      // an entry holds one user's rewards of one batch: the (batch_id, uid) index finds the few to look into
      .leftJoinLateral(
        (eb) =>
          eb
            .selectFrom('dead_letters as d')
            .select(['d.id', 'd.reason', 'd.state'])
            .whereRef('d.batch_id', '=', 'i.batch_id')
            .whereRef('d.uid', '=', 'i.uid')
            .where(sql<boolean>`d.rewards @> jsonb_build_array(jsonb_build_object('rewardId', i.reward_id))`)
            .orderBy('d.id', 'desc')
            .limit(1)
            .as('d'),
        (join) => join.onTrue(),
      )
      .select([
        'i.batch_id',
        'i.uid',
        sql<string>`i.amount::text`.as('amount'),
        'b.status as batch_status',
        'b.cancelled_at as batch_cancelled_at',
        sql<boolean>`coalesce(l.kind = 'reward' and l.batch_id = i.batch_id, false)`.as('applied_here'),
        'l.id as ledger_id',
        'l.created_at as ledger_at',
        'r.created_at as reverted_at',
        sql<boolean>`u.reward_id is not null`.as('duplicate'),
        'd.id as dead_letter_id',
        'd.reason as dead_letter_reason',
        'd.state as dead_letter_state',
      ])
      .where('i.reward_id', '=', rewardId)
      .orderBy('applied_here', 'desc')
      .orderBy('b.created_at', 'desc')
      .orderBy('i.batch_id')
      .limit(MAX_BATCHES_LISTED)
  );
}

/** A ledger entry's owner and kind. */
export interface LedgerOperation {
  readonly uid: string;
  readonly kind: string;
}

/**
 * The ledger entry whose operation id is `operationId`, or null: for a rewardId no batch holds, whether a wallet call
 * (not a batch) used it, which an unknown rewardId's message then says.
 */
export async function findLedgerOperation(db: Queryable, operationId: string): Promise<LedgerOperation | null> {
  const { db: qb } = await queryBuilder();
  const [row] = await runQuery(
    db,
    qb.selectFrom('ledger_entries').select(['uid', 'kind']).where('operation_id', '=', operationId).limit(1),
  );
  return row ?? null;
}

/** Why no reward has this id, for people: what `windfall reward` and `GET /v1/rewards/:rewardId` answer then. */
export async function unknownRewardMessage(db: Queryable, rewardId: string): Promise<string> {
  const operation = await findLedgerOperation(db, rewardId);
  const base = `no batch holds rewardId ${JSON.stringify(rewardId)}`;
  return operation
    ? `${base}; the ledger has a ${operation.kind} of uid ${JSON.stringify(operation.uid)} with that operation id, made by a wallet call, not a batch (see \`windfall wallet ${operation.uid}\`)`
    : `${base} (was it enqueued against this DATABASE_URL?)`;
}
