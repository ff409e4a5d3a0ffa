import type { ExistingEntry, LedgerOperation, OperationResult } from '../ledger/ledger-operation.js';
import { classifyExisting } from '../ledger/ledger-operation.js';
import type { Queryable } from '../db/queryable.js';

/*
 * All of one user's operations go to PostgreSQL as ONE statement (so one round trip and one implicit transaction):
 * insert the ledger entries in operation-id order (a fixed order: two racing transactions cannot deadlock),
 * skipping ids already in the ledger; add the sum of what was inserted to the wallet; answer how many entries were
 * inserted, the balance after, and — only when some id was skipped — which ids were inserted (the caller then reads
 * what the ledger holds for the others). `CHECK (balance >= 0)` aborts the whole statement when the net change would
 * overdraw the wallet.
 *
 * Three shapes of that statement, the same transaction each time:
 *  - credits of up to 16 operations (batch rewards, single credits): a VALUES list of exactly that many rows, operations sorted by id here (code point order, which is the "C" collation's
 *    byte order). It costs PostgreSQL what a hand-written multi-row insert costs: no array to parse, no sort;
 *  - more credits: the same with the operations as arrays (`unnest`), sorted by PostgreSQL;
 *  - anything with a debit: arrays, and the debit paths — a net debit updates the wallet rather than upserting it
 *    (PostgreSQL checks CHECK constraints on the proposed row of an upsert before it sees the conflict, so a negative
 *    upsert would always fail), and a net debit on a wallet that does not exist inserts a negative row on purpose, so
 *    that the same check refuses it. Those paths are gated on the sign of the change (one-time filters): a credit
 *    costs no extra index probe.
 *
 * Every shape answers (inserted, balance, inserted_ids); the credit shapes answer no row when nothing was inserted.
 * The statements are unnamed (ADR 0014): a named prepared statement lives on one server connection, and PgBouncer in
 * transaction pooling gives the next transaction another one ("prepared statement … does not exist", 26000).
 */

/** Credits up to this many operations go as a VALUES list. */
const MAX_VALUES_ROWS = 16;

const CREDIT_TAIL = (count: string) => `
delta as (
  select sum(amount) as change, count(*)::int as n from inserted
)
insert into wallets as w (uid, balance)
select $1, change from delta where n > 0
on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now()
returning (select n from delta) as inserted, balance,
          case when (select n from delta) < ${count} then array(select operation_id from inserted) end as inserted_ids`;

/**
 * Credits as a VALUES list of `rows` rows. Parameters: $1 uid, $2 batch id, then per row (id, amount, kind,
 * description) from $3 on.
 */
function creditsValuesSql(rows: number): string {
  const values = Array.from({ length: rows }, (_, i) => {
    const p = 3 + i * 4;
    return `($1, $${p}, $${p + 1}::int8, $${p + 2}, $2, $${p + 3})`;
  }).join(',\n         ');
  return `
with inserted as (
  insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description)
  values ${values}
  on conflict (operation_id) do nothing
  returning operation_id, amount
),${CREDIT_TAIL(String(rows))}`;
}

/**
 * The ledger insert both array statements start with (parameters: $1 uid, $2 ids, $3 amounts, $4 kinds,
 * $5 descriptions, $6 batch id), in operation-id order so two racing statements cannot deadlock.
 */
const INSERT_FROM_ARRAYS = `
with inserted as (
  insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description)
  select $1, t.operation_id, t.amount, t.kind, $6, t.description
  from unnest($2::text[], $3::int8[], $4::text[], $5::text[]) as t(operation_id, amount, kind, description)
  order by t.operation_id collate "C"
  on conflict (operation_id) do nothing
  returning operation_id, amount
),`;

/** Credits as arrays. Parameters: $1 uid, $2 ids, $3 amounts, $4 kinds, $5 descriptions, $6 batch id. */
const APPLY_CREDITS_SQL = `${INSERT_FROM_ARRAYS}${CREDIT_TAIL('cardinality($2::text[])')}`;

/** Any operations (debits too). Parameters as {@link APPLY_CREDITS_SQL}. Always answers one row. */
export const APPLY_USER_OPERATIONS_SQL = `${INSERT_FROM_ARRAYS}
delta as (
  select sum(amount) as change, count(*)::int as n from inserted
),
credited as (
  insert into wallets as w (uid, balance)
  select $1, change from delta where n > 0 and change >= 0
  on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now()
  returning balance
),
debited as (
  update wallets w set balance = w.balance + (select change from delta), updated_at = now()
  where (select change from delta) < 0 and w.uid = $1
  returning w.balance
),
overdrawn as (
  -- a net debit on a wallet that does not exist: this insert violates the balance check on purpose
  insert into wallets (uid, balance)
  select $1, change from delta where change < 0 and not exists (select 1 from debited)
  returning balance
)
select (select n from delta) as inserted,
       coalesce((select balance from credited), (select balance from debited)) as balance,
       case when (select n from delta) < cardinality($2::text[]) then array(select operation_id from inserted) end as inserted_ids`;

const VALUES_SQL = Array.from({ length: MAX_VALUES_ROWS + 1 }, (_, rows) => (rows === 0 ? '' : creditsValuesSql(rows)));

const FIND_ENTRIES_SQL = `select operation_id, uid, amount, batch_id from ledger_entries where operation_id = any($1::text[])`;

interface ApplyRow {
  inserted: number;
  balance: bigint | null;
  /** Null when every operation was inserted. */
  inserted_ids: string[] | null;
}

/** What a credit statement answers when it inserted nothing (it returns no row then). */
const NOTHING_INSERTED: ApplyRow = { inserted: 0, balance: null, inserted_ids: [] };

/** The outcome of {@link applyUserOperations}. */
export interface UserApplyResult {
  readonly uid: string;
  readonly results: readonly OperationResult[];
  /** The balance after the statement, or null when nothing was inserted (every operation was known). */
  readonly balance: bigint | null;
  /** Sum of what was inserted now. */
  readonly appliedAmount: bigint;
}

/** Anything with `query` — a pool or a checked-out client. */
export type { Queryable };

/**
 * Orders strings by Unicode code point — the order of their UTF-8 bytes, hence of PostgreSQL's "C" collation
 * (JavaScript's `<` compares UTF-16 units, which puts U+E000…U+FFFF after astral characters).
 */
function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i += 1) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      const xAstral = x >= 0xd800 && x <= 0xdfff;
      const yAstral = y >= 0xd800 && y <= 0xdfff;
      if (xAstral !== yAstral) return xAstral ? 1 : -1;
      return x - y;
    }
  }
  return a.length - b.length;
}

/** The statement for `operations`: its name, text and parameters. */
function statementFor(uid: string, operations: readonly LedgerOperation[], batchId: string | null) {
  let credits = true;
  for (const operation of operations) if (operation.amount <= 0n) credits = false;
  if (credits && operations.length <= MAX_VALUES_ROWS) {
    const sorted = [...operations].sort((a, b) => compareCodePoints(a.operationId, b.operationId));
    const values: (string | null)[] = [uid, batchId];
    for (const operation of sorted)
      values.push(operation.operationId, operation.amount.toString(), operation.kind, operation.description ?? null);
    return { text: VALUES_SQL[operations.length]!, values };
  }
  const ids: string[] = [];
  const amounts: string[] = [];
  const kinds: string[] = [];
  const descriptions: (string | null)[] = [];
  for (const operation of operations) {
    ids.push(operation.operationId);
    amounts.push(operation.amount.toString());
    kinds.push(operation.kind);
    descriptions.push(operation.description ?? null);
  }
  const values: unknown[] = [uid, ids, amounts, kinds, descriptions, batchId];
  return { text: credits ? APPLY_CREDITS_SQL : APPLY_USER_OPERATIONS_SQL, values };
}

/**
 * Applies a user's operations in one statement, idempotently by operation id. Throws the PostgreSQL error when the
 * statement fails (then nothing was applied): `23514` means insufficient funds, `22003` a balance overflow.
 */
export async function applyUserOperations(
  db: Queryable,
  uid: string,
  operations: readonly LedgerOperation[],
  batchId: string | null,
): Promise<UserApplyResult> {
  if (operations.length === 0) return { uid, results: [], balance: null, appliedAmount: 0n };
  const statement = statementFor(uid, operations, batchId);
  const { rows } = await db.query<ApplyRow>(statement);
  const row = rows[0] ?? NOTHING_INSERTED;
  const balance = row.balance;

  if (row.inserted_ids === null) {
    // every operation was inserted now (the common case)
    let appliedAmount = 0n;
    const results: OperationResult[] = [];
    for (const operation of operations) {
      appliedAmount += operation.amount;
      results.push({ operationId: operation.operationId, outcome: 'applied' });
    }
    return { uid, results, balance, appliedAmount };
  }

  // Some ids were skipped: they are in the ledger already — committed before this statement, or by a transaction
  // that committed while it ran (READ COMMITTED sees both now). Read what the ledger holds for them.
  const insertedIds = new Set(row.inserted_ids);
  const skipped = [
    ...new Set(operations.map((operation) => operation.operationId).filter((id) => !insertedIds.has(id))),
  ];
  const found = new Map<string, ExistingEntry>();
  if (skipped.length > 0) {
    const entries = await db.query<{ operation_id: string; uid: string; amount: bigint; batch_id: string | null }>(
      FIND_ENTRIES_SQL,
      [skipped],
    );
    for (const entry of entries.rows)
      found.set(entry.operation_id, { uid: entry.uid, amount: entry.amount, batchId: entry.batch_id });
  }

  let appliedAmount = 0n;
  const results: OperationResult[] = [];
  // An id repeated within `operations` is inserted once; later copies are judged against the first.
  const insertedNow = new Map<string, ExistingEntry>();
  for (const operation of operations) {
    const first = insertedNow.get(operation.operationId);
    if (insertedIds.has(operation.operationId) && !first) {
      insertedNow.set(operation.operationId, { uid, amount: operation.amount, batchId });
      appliedAmount += operation.amount;
      results.push({ operationId: operation.operationId, outcome: 'applied' });
      continue;
    }
    const existing = first ?? found.get(operation.operationId);
    if (!existing)
      throw new Error(`internal: operation ${operation.operationId} was neither inserted nor found in the ledger`);
    const outcome = classifyExisting(uid, operation.amount, batchId, existing);
    results.push(
      outcome === 'conflict'
        ? { operationId: operation.operationId, outcome, existing }
        : { operationId: operation.operationId, outcome },
    );
  }
  return { uid, results, balance, appliedAmount };
}
