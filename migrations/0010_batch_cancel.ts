import { sql, type Kysely } from 'kysely';

/**
 * Batch cancel (`windfall batch cancel`, `POST /v1/batches/:id/cancel`): `reward_batches.cancelled_at` (set once by
 * the cancel; the rewards not settled then count as cancelled for good), the status `cancelled`, and the event type
 * `batch.cancelled`.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table reward_batches add column cancelled_at timestamptz`.execute(db);
  await sql`alter table reward_batches drop constraint if exists reward_batches_status_check`.execute(db);
  await sql`
    alter table reward_batches add constraint reward_batches_status_check
    check (status in ('pending', 'processing', 'completed', 'completed_with_failures', 'cancelled', 'reverted', 'partially_reverted'))`.execute(
    db,
  );
  await sql`alter table batch_events drop constraint if exists batch_events_type_check`.execute(db);
  await sql`
    alter table batch_events add constraint batch_events_type_check
    check (type in ('batch.completed', 'batch.reverted', 'batch.cancelled'))`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table batch_events drop constraint if exists batch_events_type_check`.execute(db);
  await sql`alter table batch_events add constraint batch_events_type_check check (type in ('batch.completed', 'batch.reverted'))`.execute(
    db,
  );
  await sql`alter table reward_batches drop constraint if exists reward_batches_status_check`.execute(db);
  await sql`
    alter table reward_batches add constraint reward_batches_status_check
    check (status in ('pending', 'processing', 'completed', 'completed_with_failures', 'reverted', 'partially_reverted'))`.execute(
    db,
  );
  await sql`alter table reward_batches drop column if exists cancelled_at`.execute(db);
}
