import { sql, type Kysely } from 'kysely';

/**
 * Fences (ADR 0013) and the amounts a campaign's reservation gives back.
 *
 * - `reward_chunks.fence`, `dead_letters.fence`: the claim of the job attempt that may settle the chunk's rewards (or
 *   replay the entry's). An attempt takes the next value when it starts; a settlement statement locks the row
 *   `for share` and settles nothing unless the row still carries its attempt's value; whatever gives a reward up
 *   (the dead-letter writer, a revert) moves the value on, which waits for the statements holding the row and
 *   shuts out those still to come.
 * - `dead_letters.amount`: the sum of the entry's rewards (minor units), so that purged and conflicting entries give
 *   their amount back to their campaign without reading every entry's rewards.
 * - `reward_duplicates.amount`: the duplicate reward's amount, for the same reason.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table reward_chunks add column fence bigint not null default 0`.execute(db);
  await sql`alter table dead_letters add column fence bigint not null default 0, add column amount numeric(40, 0)`.execute(
    db,
  );
  await sql`
    update dead_letters d set amount = (select coalesce(sum((r.value->>'amount')::numeric), 0) from jsonb_array_elements(d.rewards) as r(value))`.execute(
    db,
  );
  await sql`alter table dead_letters alter column amount set not null`.execute(db);
  await sql`alter table reward_duplicates add column amount bigint`.execute(db);
  await sql`
    update reward_duplicates d set amount = i.amount
    from reward_batch_items i where i.batch_id = d.batch_id and i.reward_id = d.reward_id`.execute(db);
  // a duplicate found by a replay: its amount is in the replayed entry
  await sql`
    update reward_duplicates d set amount = (r.value->>'amount')::bigint
    from dead_letters e cross join lateral jsonb_array_elements(e.rewards) as r(value)
    where d.amount is null and e.batch_id = d.batch_id and r.value->>'rewardId' = d.reward_id`.execute(db);
  await sql`update reward_duplicates set amount = 0 where amount is null`.execute(db);
  await sql`alter table reward_duplicates alter column amount set not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table reward_duplicates drop column if exists amount`.execute(db);
  await sql`alter table dead_letters drop column if exists amount, drop column if exists fence`.execute(db);
  await sql`alter table reward_chunks drop column if exists fence`.execute(db);
}
