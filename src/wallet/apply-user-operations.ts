import type pg from 'pg';
import type { ExistingEntry, LedgerOperation, OperationResult } from './ledger-operation.js';
import { classifyExisting } from './ledger-operation.js';

/**
 * All of one user's operations in ONE statement (so one round trip and one implicit transaction):
 * insert the ledger entries in operation-id order (a fixed order: two racing transactions cannot deadlock),
 * skipping ids already in the ledger; add the sum of what was inserted to the wallet (a net credit upserts it;
 * a net debit updates it — PostgreSQL checks CHECK constraints on the proposed row of an upsert before it sees
 * the conflict, so a negative upsert would always fail);
 * report for every input whether it was inserted or which entry its id already has.
 * `CHECK (balance >= 0)` aborts the whole statement when the net change would overdraw the wallet.
 */
export const APPLY_USER_OPERATIONS_SQL = `
with input as (
  select * from unnest($2::text[], $3::int8[], $4::text[], $5::text[]) as t(operation_id, amount, kind, description)
),
inserted as (
  insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description)
  select $1, operation_id, amount, kind, $6, description from input order by operation_id
  on conflict (operation_id) do nothing
  returning operation_id, amount
),
delta as (
  select sum(amount) as change from inserted having count(*) > 0
),
credited as (
  insert into wallets as w (uid, balance)
  select $1, change from delta where change >= 0
  on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now()
  returning balance
),
debited as (
  update wallets w set balance = w.balance + d.change, updated_at = now()
  from delta d where w.uid = $1 and d.change < 0
  returning w.balance
),
overdrawn as (
  -- a net debit on a wallet that does not exist: this insert violates the balance check on purpose
  insert into wallets (uid, balance)
  select $1, change from delta where change < 0 and not exists (select 1 from wallets where uid = $1)
  returning balance
)
select i.operation_id,
       ins.operation_id is not null as inserted,
       l.uid as existing_uid,
       l.amount as existing_amount,
       l.batch_id as existing_batch_id,
       coalesce((select balance from credited), (select balance from debited)) as balance
from input i
left join inserted ins on ins.operation_id = i.operation_id
left join ledger_entries l on ins.operation_id is null and l.operation_id = i.operation_id`;

const FIND_ENTRIES_SQL = `select operation_id, uid, amount, batch_id from ledger_entries where operation_id = any($1::text[])`;

interface ApplyRow {
  operation_id: string;
  inserted: boolean;
  existing_uid: string | null;
  existing_amount: bigint | null;
  existing_batch_id: string | null;
  balance: bigint | null;
}

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
export type Queryable = Pick<pg.Pool, 'query'>;

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
  const { rows } = await db.query<ApplyRow>({
    name: 'windfall_apply_user_operations',
    text: APPLY_USER_OPERATIONS_SQL,
    values: [uid, ids, amounts, kinds, descriptions, batchId],
  });

  const byId = new Map<string, ApplyRow>();
  for (const row of rows) byId.set(row.operation_id, row);
  // An id another transaction committed after this statement's snapshot was skipped but is not visible above:
  // read it now (READ COMMITTED sees it).
  const unseen = rows.filter((row) => !row.inserted && row.existing_uid === null).map((row) => row.operation_id);
  const late = new Map<string, ExistingEntry>();
  if (unseen.length > 0) {
    const found = await db.query<{ operation_id: string; uid: string; amount: bigint; batch_id: string | null }>(
      FIND_ENTRIES_SQL,
      [unseen],
    );
    for (const row of found.rows) late.set(row.operation_id, { uid: row.uid, amount: row.amount, batchId: row.batch_id });
  }

  let balance: bigint | null = null;
  let appliedAmount = 0n;
  const results: OperationResult[] = [];
  // An id repeated within `operations` is inserted once; later copies are judged against the first.
  const insertedNow = new Map<string, ExistingEntry>();
  for (const operation of operations) {
    const row = byId.get(operation.operationId);
    if (!row) throw new Error(`internal: no result for operation ${operation.operationId}`);
    if (row.balance !== null) balance = row.balance;
    const first = insertedNow.get(operation.operationId);
    if (row.inserted && !first) {
      insertedNow.set(operation.operationId, { uid, amount: operation.amount, batchId });
      appliedAmount += operation.amount;
      results.push({ operationId: operation.operationId, outcome: 'applied' });
      continue;
    }
    const existing: ExistingEntry | undefined =
      first ??
      (row.existing_uid !== null && row.existing_amount !== null
        ? { uid: row.existing_uid, amount: row.existing_amount, batchId: row.existing_batch_id }
        : late.get(operation.operationId));
    if (!existing) throw new Error(`internal: operation ${operation.operationId} was neither inserted nor found in the ledger`);
    const outcome = classifyExisting(uid, operation.amount, batchId, existing);
    results.push(outcome === 'conflict' ? { operationId: operation.operationId, outcome, existing } : { operationId: operation.operationId, outcome });
  }
  return { uid, results, balance, appliedAmount };
}
