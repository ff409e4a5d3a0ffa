import { sql, type Kysely } from 'kysely';

/**
 * The reward lookup (`windfall reward`, `GET /v1/rewards/:rewardId`): the batches holding a rewardId, found by an
 * index on `reward_batch_items (reward_id)` (the primary key leads with `batch_id`, so without it a lookup reads the
 * whole table: 0.6 s at 10 million staged rewards, 1.2 ms with it).
 *
 * A plain `create index`: migrations run in one transaction, where `create index concurrently` is impossible. It
 * takes a SHARE lock on `reward_batch_items` while it builds: reads and workers go on, staging a new batch waits
 * (measured: 5.6 s for 10 million rows). An operator who cannot pause staging that long builds it beforehand, outside
 * any transaction, under the same name:
 *
 *     create index concurrently if not exists reward_batch_items_reward_id on reward_batch_items (reward_id);
 *
 * and this migration keeps it. An invalid index of that name (a concurrent build that failed) is built again.
 *
 * Also `dead_letters (uid)`: the console finds a user's entries, and the batches that hold one, by uid (entries are
 * few beside staged rewards: a small index, written only when a reward is dead-lettered).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    do $$ begin
      if exists (select 1 from pg_index where indexrelid = to_regclass('reward_batch_items_reward_id') and not indisvalid)
      then drop index reward_batch_items_reward_id;
      end if;
    end $$`.execute(db);
  await sql`create index if not exists reward_batch_items_reward_id on reward_batch_items (reward_id)`.execute(db);
  await sql`create index dead_letters_uid on dead_letters (uid)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists dead_letters_uid`.execute(db);
  await sql`drop index if exists reward_batch_items_reward_id`.execute(db);
}
