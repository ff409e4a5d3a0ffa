import type { ColumnType, Generated } from 'kysely';
import type {
  AuditAction,
  BatchEventState,
  BatchEventType,
  BatchPriority,
  BatchStatus,
  DeadLetterReason,
  DeadLetterState,
} from './stored-values.js';

export type { BatchPriority, BatchStatus, DeadLetterReason, DeadLetterState } from './stored-values.js';

/*
 * The tables of migrations/ as node-pg reads them with the pool's parsers (database.ts): int8 → bigint, integer →
 * number, numeric → digit string, timestamptz → Date, jsonb → parsed, text[] / integer[] → arrays. `ColumnType<S, I, U>`
 * is what a select reads (S), an insert writes (I) and an update writes (U); `never` = not written. Kept in step with
 * the migrations by test/schema-types.test.ts.
 */

/** int8 columns arrive as `bigint` (the pool's type parser); they are written as bigint or digit strings. */
type Int8 = ColumnType<bigint, bigint | string, bigint | string>;
/** An int8 column with a default. */
type GeneratedInt8 = ColumnType<bigint, bigint | string | undefined, bigint | string>;
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
/** An identity column (`generated always as identity`): read as bigint, never written. */
type Identity = ColumnType<bigint, never, never>;

export interface WalletsTable {
  uid: string;
  balance: Int8;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export type LedgerKind = 'reward' | 'credit' | 'debit';

export interface LedgerEntriesTable {
  id: Identity;
  uid: string;
  operation_id: string;
  amount: Int8;
  kind: LedgerKind;
  batch_id: string | null;
  description: string | null;
  created_at: Generated<Date>;
}

export interface RewardBatchesTable {
  batch_id: string;
  status: Generated<BatchStatus>;
  total: number;
  users: number;
  chunks: number;
  shards: number;
  content_digest: string;
  created_at: Generated<Date>;
  enqueued_at: Timestamp | null;
  updated_at: Generated<Date>;
  campaign_id: string | null;
  /** Sum of the batch's amounts (minor units, numeric), kept for batches of a campaign; null for the others. */
  amount_total: string | null;
  priority: Generated<BatchPriority>;
  /** When `windfall batch cancel` stopped the batch (its unsettled rewards count as cancelled); null: never. */
  cancelled_at: Timestamp | null;
}

/** Lane of a batch's chunk jobs. */

export interface CampaignsTable {
  campaign_id: string;
  /** Minor units (numeric); null = unlimited. */
  budget: string | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface RewardBatchItemsTable {
  batch_id: string;
  shard: number;
  uid: string;
  reward_id: string;
  row_no: number;
  amount: Int8;
  description: string | null;
}

export interface RewardChunksTable {
  batch_id: string;
  chunk_no: number;
  shard: number;
  first_uid: string;
  last_uid: string;
  users: number;
  rewards: number;
  completed_at: Timestamp | null;
  /** The chunk's users in "C" order, as counted at staging; null when PostgreSQL planned the batch. */
  uids: string[] | null;
  /** Rewards of each of `uids`. */
  user_rewards: number[] | null;
  /** The claim of the job attempt that may settle the chunk (see ADR 0013). */
  fence: GeneratedInt8;
}

export interface RewardDuplicatesTable {
  batch_id: string;
  reward_id: string;
  recorded_at: Generated<Date>;
  /** The duplicate reward's amount (minor units). */
  amount: Int8;
}

/** A reward as stored in a dead-letter entry (amount as a digit string). */
export interface StoredReward {
  rewardId: string;
  uid: string;
  amount: string;
  description?: string;
}

export interface DeadLettersTable {
  id: Identity;
  source: string;
  batch_id: string;
  chunk_no: number | null;
  replay_of: Int8 | null;
  uid: string;
  shard: number;
  rewards: ColumnType<StoredReward[], string, string>;
  reward_count: number;
  reason: DeadLetterReason;
  error: string;
  attempts: number;
  failed_at: Generated<Date>;
  state: Generated<DeadLetterState>;
  replayed_at: Timestamp | null;
  purged_at: Timestamp | null;
  /** The claim of the replay attempt that may settle the entry's rewards (see ADR 0013). */
  fence: GeneratedInt8;
  /** The sum of the entry's rewards (minor units, numeric). */
  amount: string;
}

/**
 * The audit trail (append-only: triggers refuse updates and deletes, so no column is updatable here either).
 * `action` has no check constraint: {@link AuditAction} is what `recordAudit` writes.
 */
export interface AuditLogTable {
  id: Identity;
  at: ColumnType<Date, Date | string | undefined, never>;
  actor: ColumnType<string, string, never>;
  action: ColumnType<AuditAction, AuditAction, never>;
  target: ColumnType<string, string, never>;
  /** jsonb, written as JSON text. */
  details: ColumnType<Record<string, unknown>, string | undefined, never>;
  result: ColumnType<Record<string, unknown>, string, never>;
}

/** The events owed to the webhook receiver (ADR 0008). */
export interface BatchEventsTable {
  /** uuid, `gen_random_uuid()`. */
  id: Generated<string>;
  batch_id: string;
  type: BatchEventType;
  /** The event's `data` object as recorded (jsonb). */
  data: ColumnType<Record<string, unknown>, string, string>;
  created_at: Generated<Date>;
  state: Generated<BatchEventState>;
  attempts: Generated<number>;
  last_error: string | null;
  last_attempt_at: Timestamp | null;
  delivered_at: Timestamp | null;
}

/** The tables Windfall owns (every table of migrations/; Kysely's own migration tables aside), for Kysely. */
export interface Database {
  wallets: WalletsTable;
  ledger_entries: LedgerEntriesTable;
  reward_batches: RewardBatchesTable;
  campaigns: CampaignsTable;
  reward_batch_items: RewardBatchItemsTable;
  reward_chunks: RewardChunksTable;
  reward_duplicates: RewardDuplicatesTable;
  dead_letters: DeadLettersTable;
  audit_log: AuditLogTable;
  batch_events: BatchEventsTable;
}
