import { sql, type Kysely } from 'kysely';

/**
 * Campaign budgets and batch priorities.
 *
 * - `campaigns`: one row per campaign a batch or an operator named; `budget` null = unlimited.
 * - `reward_batches.campaign_id`: the campaign a batch pays out of (null: none).
 * - `reward_batches.amount_total`: the sum of the batch's amounts (minor units), what it reserves of its campaign's
 *   budget; null for batches without a campaign (and those recorded before this migration).
 * - `reward_batches.priority`: `high`, `normal` or `low`, the lane of its chunk jobs.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table campaigns (
      campaign_id text primary key check (char_length(campaign_id) between 1 and 128),
      budget numeric(40, 0) check (budget >= 0),
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db);
  await sql`
    alter table reward_batches
      add column campaign_id text,
      add column amount_total numeric(40, 0),
      add column priority text not null default 'normal' check (priority in ('high', 'normal', 'low'))`.execute(db);
  await sql`create index reward_batches_campaign on reward_batches (campaign_id) where campaign_id is not null`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists reward_batches_campaign`.execute(db);
  await sql`alter table reward_batches drop column if exists priority, drop column if exists amount_total, drop column if exists campaign_id`.execute(
    db,
  );
  await sql`drop table if exists campaigns`.execute(db);
}
