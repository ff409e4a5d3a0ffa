import type { SelectType } from 'kysely';
import { describe, expect, it } from 'vitest';
import type { Database } from '../src/db/schema.js';
import {
  BATCH_EVENT_STATES,
  BATCH_EVENT_TYPES,
  BATCH_PRIORITIES,
  BATCH_STATUSES,
  DEAD_LETTER_REASONS,
  DEAD_LETTER_STATES,
} from '../src/db/stored-values.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

/**
 * The PostgreSQL types (information_schema `udt_name`) a column may have when node-pg, with the pool's parsers
 * (src/db/database.ts), reads it as `S`: int8 → bigint, integer → number, timestamptz → Date, text / numeric / uuid →
 * string, text[] / integer[] → arrays, jsonb → anything else.
 */
type UdtOf<S> = S extends bigint
  ? 'int8'
  : S extends number
    ? 'int4'
    : S extends Date
      ? 'timestamptz'
      : S extends string
        ? 'text' | 'numeric' | 'uuid'
        : S extends readonly string[]
          ? '_text' | 'jsonb'
          : S extends readonly number[]
            ? '_int4' | 'jsonb'
            : 'jsonb';

/** A column as the database has it: its type, and whether it may be null. */
type ColumnSpec<C> = readonly [
  udt: UdtOf<NonNullable<SelectType<C>>>,
  nullable: null extends SelectType<C> ? true : false,
];

/**
 * Every table and column of src/db/schema.ts, written out. The compiler holds this list to the types (a column
 * missing here or extra, a type the TypeScript type could not be read as, a nullability that differs, fail
 * `npm run typecheck`); the test below holds it to the migrated database.
 */
const SCHEMA: { readonly [T in keyof Database]: { readonly [K in keyof Database[T]]-?: ColumnSpec<Database[T][K]> } } =
  {
    wallets: {
      uid: ['text', false],
      balance: ['int8', false],
      created_at: ['timestamptz', false],
      updated_at: ['timestamptz', false],
    },
    ledger_entries: {
      id: ['int8', false],
      uid: ['text', false],
      operation_id: ['text', false],
      amount: ['int8', false],
      kind: ['text', false],
      batch_id: ['text', true],
      description: ['text', true],
      created_at: ['timestamptz', false],
    },
    reward_batches: {
      batch_id: ['text', false],
      status: ['text', false],
      total: ['int4', false],
      users: ['int4', false],
      chunks: ['int4', false],
      shards: ['int4', false],
      content_digest: ['text', false],
      created_at: ['timestamptz', false],
      enqueued_at: ['timestamptz', true],
      updated_at: ['timestamptz', false],
      campaign_id: ['text', true],
      amount_total: ['numeric', true],
      priority: ['text', false],
      cancelled_at: ['timestamptz', true],
    },
    campaigns: {
      campaign_id: ['text', false],
      budget: ['numeric', true],
      created_at: ['timestamptz', false],
      updated_at: ['timestamptz', false],
    },
    reward_batch_items: {
      batch_id: ['text', false],
      shard: ['int4', false],
      uid: ['text', false],
      reward_id: ['text', false],
      row_no: ['int4', false],
      amount: ['int8', false],
      description: ['text', true],
    },
    reward_chunks: {
      batch_id: ['text', false],
      chunk_no: ['int4', false],
      shard: ['int4', false],
      first_uid: ['text', false],
      last_uid: ['text', false],
      users: ['int4', false],
      rewards: ['int4', false],
      completed_at: ['timestamptz', true],
      uids: ['_text', true],
      user_rewards: ['_int4', true],
      fence: ['int8', false],
    },
    reward_duplicates: {
      batch_id: ['text', false],
      reward_id: ['text', false],
      recorded_at: ['timestamptz', false],
      amount: ['int8', false],
    },
    dead_letters: {
      id: ['int8', false],
      source: ['text', false],
      batch_id: ['text', false],
      chunk_no: ['int4', true],
      replay_of: ['int8', true],
      uid: ['text', false],
      shard: ['int4', false],
      rewards: ['jsonb', false],
      reward_count: ['int4', false],
      reason: ['text', false],
      error: ['text', false],
      attempts: ['int4', false],
      failed_at: ['timestamptz', false],
      state: ['text', false],
      replayed_at: ['timestamptz', true],
      purged_at: ['timestamptz', true],
      fence: ['int8', false],
      amount: ['numeric', false],
    },
    audit_log: {
      id: ['int8', false],
      at: ['timestamptz', false],
      actor: ['text', false],
      action: ['text', false],
      target: ['text', false],
      details: ['jsonb', false],
      result: ['jsonb', false],
    },
    batch_events: {
      id: ['uuid', false],
      batch_id: ['text', false],
      type: ['text', false],
      data: ['jsonb', false],
      created_at: ['timestamptz', false],
      state: ['text', false],
      attempts: ['int4', false],
      last_error: ['text', true],
      last_attempt_at: ['timestamptz', true],
      delivered_at: ['timestamptz', true],
    },
  };

describe('src/db/schema.ts', () => {
  it('describes every table and column of the migrated database, with its type and nullability', async () => {
    const { rows } = await env.pool.query<{
      table_name: string;
      column_name: string;
      udt_name: string;
      is_nullable: 'YES' | 'NO';
    }>(
      `select table_name, column_name, udt_name, is_nullable from information_schema.columns
       where table_schema = current_schema() and table_name not in ('kysely_migration', 'kysely_migration_lock')
       order by table_name, ordinal_position`,
    );
    const database: Record<string, Record<string, readonly [string, boolean]>> = {};
    for (const row of rows) {
      (database[row.table_name] ??= {})[row.column_name] = [row.udt_name, row.is_nullable === 'YES'];
    }
    expect(Object.keys(database).length).toBeGreaterThanOrEqual(10);
    expect(database).toEqual(SCHEMA);
  });

  it("holds the closed sets of src/db/stored-values.ts to the database's check constraints", async () => {
    /** The values a column's `check (column in (...))` constraint allows, sorted. */
    const allowed = async (table: string, column: string): Promise<string[]> => {
      const { rows } = await env.pool.query<{ definition: string }>(
        `select pg_get_constraintdef(c.oid) as definition
         from pg_constraint c join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any (c.conkey)
         where c.contype = 'c' and c.conrelid = to_regclass($1) and a.attname = $2`,
        [table, column],
      );
      expect(rows, `${table}.${column} has one check constraint`).toHaveLength(1);
      return [...rows[0]!.definition.matchAll(/'([^']+)'::text/g)].map((match) => match[1]!).sort();
    };
    const sorted = (values: readonly string[]): string[] => [...values].sort();
    expect(await allowed('reward_batches', 'status')).toEqual(sorted(BATCH_STATUSES));
    expect(await allowed('reward_batches', 'priority')).toEqual(sorted(BATCH_PRIORITIES));
    expect(await allowed('dead_letters', 'reason')).toEqual(sorted(DEAD_LETTER_REASONS));
    expect(await allowed('dead_letters', 'state')).toEqual(sorted(DEAD_LETTER_STATES));
    expect(await allowed('batch_events', 'type')).toEqual(sorted(BATCH_EVENT_TYPES));
    expect(await allowed('batch_events', 'state')).toEqual(sorted(BATCH_EVENT_STATES));
  });
});
