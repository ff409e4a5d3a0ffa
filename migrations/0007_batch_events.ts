import { sql, type Kysely } from 'kysely';

/**
 * Batch events (webhooks, ADR 0008): one row per event Windfall owes the receiver at `WINDFALL_WEBHOOK_URL` — a
 * batch's `batch.completed` and `batch.reverted`, at most one of each per batch (the unique key), with its delivery
 * state. `data` holds the event's `data` object as recorded; the body sent is rendered from the row the same way at
 * every attempt (stable `id` and `createdAt`). Pending events are found by a partial index: the watchdog re-adds
 * their delivery jobs when Redis lost them.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table batch_events (
      id              uuid primary key default gen_random_uuid(),
      batch_id        text not null references reward_batches (batch_id),
      type            text not null check (type in ('batch.completed', 'batch.reverted')),
      data            jsonb not null,
      created_at      timestamptz not null default now(),
      state           text not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
      attempts        integer not null default 0,
      last_error      text,
      last_attempt_at timestamptz,
      delivered_at    timestamptz,
      unique (batch_id, type)
    )`.execute(db);
  await sql`create index batch_events_pending on batch_events (created_at) where state = 'pending'`.execute(db);
  await sql`create index batch_events_created on batch_events (created_at desc)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table if exists batch_events`.execute(db);
}
