import { sql, type Kysely } from 'kysely';

/**
 * Batch revert: a batch whose applied rewards were debited back is `reverted` (all of them) or `partially_reverted`
 * (users who had spent the money keep it). The compensating entries live in `ledger_entries` (kind `debit`,
 * operation id `revert:<rewardId>`, the batch's id).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table reward_batches drop constraint if exists reward_batches_status_check`.execute(db);
  await sql`
    alter table reward_batches add constraint reward_batches_status_check
    check (status in ('pending', 'processing', 'completed', 'completed_with_failures', 'reverted', 'partially_reverted'))`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table reward_batches drop constraint if exists reward_batches_status_check`.execute(db);
  await sql`
    alter table reward_batches add constraint reward_batches_status_check
    check (status in ('pending', 'processing', 'completed', 'completed_with_failures'))`.execute(db);
}
