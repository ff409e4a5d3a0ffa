import { sql, type Kysely } from 'kysely';

/**
 * The audit trail: one append-only record per operator action (force release, replay, purge, and later revert and
 * campaign settings). Updates, deletes and truncation are refused by triggers, whoever asks: no command or route
 * changes a record, and neither can a stray statement.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table audit_log (
      id       bigint generated always as identity primary key,
      at       timestamptz not null default now(),
      actor    text not null,
      action   text not null,
      target   text collate "C" not null,
      details  jsonb not null default '{}',
      result   jsonb not null
    )`.execute(db);
  await sql`create index audit_log_action on audit_log (action, id desc)`.execute(db);
  await sql`create index audit_log_target on audit_log (target, id desc)`.execute(db);
  await sql`
    create function audit_log_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'the audit trail is append-only: % on audit_log refused', tg_op;
    end
    $$`.execute(db);
  await sql`create trigger audit_log_no_change before update or delete on audit_log for each row execute function audit_log_append_only()`.execute(
    db,
  );
  await sql`create trigger audit_log_no_truncate before truncate on audit_log for each statement execute function audit_log_append_only()`.execute(
    db,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table if exists audit_log`.execute(db);
  await sql`drop function if exists audit_log_append_only()`.execute(db);
}
