import { sql, type Kysely } from 'kysely';

/**
 * The wallet ledger and the reward batch bookkeeping.
 * Identifiers use the "C" collation: byte order, the same on every server, and fast range scans by uid.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table wallets (
      uid         text collate "C" primary key,
      balance     bigint not null default 0 constraint wallets_balance_not_negative check (balance >= 0),
      created_at  timestamptz not null default now(),
      updated_at  timestamptz not null default now()
    )`.execute(db);

  await sql`
    create table ledger_entries (
      id            bigint generated always as identity primary key,
      uid           text collate "C" not null,
      operation_id  text collate "C" not null constraint ledger_entries_operation_id_key unique,
      amount        bigint not null check (amount <> 0),
      kind          text not null check (kind in ('reward', 'credit', 'debit')),
      batch_id      text collate "C",
      description   text,
      created_at    timestamptz not null default now()
    )`.execute(db);
  await sql`create index ledger_entries_uid_id on ledger_entries (uid, id desc)`.execute(db);
  await sql`create index ledger_entries_batch_id on ledger_entries (batch_id) where batch_id is not null`.execute(db);

  await sql`
    create table reward_batches (
      batch_id        text collate "C" primary key,
      status          text not null default 'pending'
                      check (status in ('pending', 'processing', 'completed', 'completed_with_failures')),
      total           integer not null,
      users           integer not null,
      chunks          integer not null,
      shards          integer not null,
      content_digest  text not null,
      created_at      timestamptz not null default now(),
      enqueued_at     timestamptz,
      updated_at      timestamptz not null default now()
    )`.execute(db);

  // The accepted rewards of each batch: the durable copy the shard jobs point into (jobs carry no rewards).
  await sql`
    create table reward_batch_items (
      batch_id     text collate "C" not null,
      shard        integer not null,
      uid          text collate "C" not null,
      reward_id    text collate "C" not null,
      row_no       integer not null,
      amount       bigint not null check (amount > 0),
      description  text,
      primary key (batch_id, shard, uid, reward_id)
    )`.execute(db);

  // One row per shard job: the users of one shard from first_uid to last_uid.
  await sql`
    create table reward_chunks (
      batch_id      text collate "C" not null,
      chunk_no      integer not null,
      shard         integer not null,
      first_uid     text collate "C" not null,
      last_uid      text collate "C" not null,
      users         integer not null,
      rewards       integer not null,
      completed_at  timestamptz,
      primary key (batch_id, chunk_no)
    )`.execute(db);
  await sql`create index reward_chunks_open on reward_chunks (batch_id) where completed_at is null`.execute(db);

  // Rewards of a batch found already applied by another operation: counted as duplicates of this batch.
  await sql`
    create table reward_duplicates (
      batch_id      text collate "C" not null,
      reward_id     text collate "C" not null,
      recorded_at   timestamptz not null default now(),
      primary key (batch_id, reward_id)
    )`.execute(db);

  // The dead-letter queue's durable record: one entry per user, job (or replay) and reason.
  await sql`
    create table dead_letters (
      id            bigint generated always as identity primary key,
      source        text collate "C" not null constraint dead_letters_source_key unique,
      batch_id      text collate "C" not null,
      chunk_no      integer,
      replay_of     bigint references dead_letters (id),
      uid           text collate "C" not null,
      shard         integer not null,
      rewards       jsonb not null,
      reward_count  integer not null,
      reason        text not null
                    check (reason in ('LOCK_BUSY', 'CONFLICT', 'INVALID', 'DB_ERROR', 'INSUFFICIENT_FUNDS', 'UNKNOWN')),
      error         text not null,
      attempts      integer not null,
      failed_at     timestamptz not null default now(),
      state         text not null default 'open' check (state in ('open', 'replayed', 'purged')),
      replayed_at   timestamptz,
      purged_at     timestamptz
    )`.execute(db);
  await sql`create index dead_letters_batch on dead_letters (batch_id, uid)`.execute(db);
  await sql`create index dead_letters_open on dead_letters (id) where state = 'open'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of [
    'dead_letters',
    'reward_duplicates',
    'reward_chunks',
    'reward_batch_items',
    'reward_batches',
    'ledger_entries',
    'wallets',
  ]) {
    await sql`drop table if exists ${sql.table(table)}`.execute(db);
  }
}
