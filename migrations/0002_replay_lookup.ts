import { sql, type Kysely } from 'kysely';

/**
 * Replays look up the entries an earlier run of the same replay wrote (`replay_of = d.id`): index them, so that a
 * replay costs the same whatever the size of the dead-letter table.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index dead_letters_replay_of on dead_letters (replay_of) where replay_of is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists dead_letters_replay_of`.execute(db);
}
