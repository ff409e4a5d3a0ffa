import { sql, type Kysely } from 'kysely';

/**
 * A chunk's users and their reward counts, as the enqueue command counted them while reading the batch (null when
 * PostgreSQL planned the batch from its staged rows, for batches of very many users): a job then reads one row
 * instead of grouping its chunk's staged rewards by user.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table reward_chunks add column uids text[], add column user_rewards integer[]`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table reward_chunks drop column if exists uids, drop column if exists user_rewards`.execute(db);
}
