import type pg from 'pg';
import { recordAudit } from '../audit/audit-trail.js';
import { fenceBatch } from '../db/fences.js';
import { inTransaction } from '../db/transaction.js';
import type { DeadLetterService } from '../dead-letters/dead-letter-service.js';
import type { EventSink } from '../events/event-publisher.js';
import { writeStatusWithEvent, type RecordedEvent } from '../events/event-store.js';
import { descriptionProblem } from '../rewards/field-rules.js';
import type { Logger } from '../log/logger.js';
import type { WalletService } from '../wallet/wallet-service.js';
import { getBatchReport } from '../status/batch-status.js';
import { WindfallError } from '../errors/windfall-error.js';
import type { Queryable } from '../db/queryable.js';

/** Users taken back per wallet call (their rewards are read a page at a time). */
const USERS_PER_PAGE = 500;

/** The operation id of the debit that takes back reward `rewardId`. */
export function revertOperationId(rewardId: string): string {
  return `revert:${rewardId}`;
}

/** What a batch revert did (or, with `dryRun`, would do). */
export interface RevertReport {
  readonly batchId: string;
  readonly dryRun: boolean;
  /** Rewards debited back by this run (or that would be). */
  readonly reverted: number;
  /** Rewards an earlier run debited back already. */
  readonly alreadyReverted: number;
  /** Users left unreverted because their balance is lower than what the batch gave them (money as digit strings). */
  readonly insufficientFunds: readonly { readonly uid: string; readonly amount: string; readonly balance: string }[];
  /** Users not reverted for another reason (a lock that stayed busy, an operation id taken by another entry). */
  readonly failed: readonly { readonly uid: string; readonly reason: string; readonly error: string }[];
  /** Open dead-letter entries of the batch closed (purged): they can no longer be replayed. */
  readonly closedDeadLetters: number;
  /** The batch status after the run (with `dryRun`: what it would be). */
  readonly status: 'reverted' | 'partially_reverted';
}

/** The batch cannot be reverted now (it is still processing); nothing was changed. */
export class BatchRevertRefusedError extends WindfallError {
  static override readonly code = 'BATCH_PROCESSING';
  override readonly name = 'BatchRevertRefusedError';
}

/** No batch has that id. */
export class UnknownBatchError extends WindfallError {
  static override readonly code = 'BATCH_NOT_FOUND';
  override readonly name = 'UnknownBatchError';
}

/** The request itself is invalid (the reason); nothing was changed. */
export class RevertRequestError extends WindfallError {
  static override readonly code = 'REQUEST_INVALID';
  override readonly name = 'RevertRequestError';
  /** The field at fault. */
  override readonly field = 'reason';
}

/** What {@link revertBatch} needs. */
export interface RevertContext {
  readonly pool: pg.Pool;
  readonly wallet: WalletService;
  readonly logger: Logger;
  /** Removes the closed entries from the dead-letter queue's BullMQ mirror (optional). */
  readonly deadLetters?: Pick<DeadLetterService, 'unmirror'>;
  /** Webhooks configured: a run that finishes records the batch's `batch.reverted` event (one per batch) and hands it here. */
  readonly events?: EventSink;
}

/** Options of {@link revertBatch}. */
export interface RevertOptions {
  readonly dryRun?: boolean;
  /** Why (written as the debits' description and into the audit trail). */
  readonly reason?: string;
  /** Who asks (audit trail). Default `library`. */
  readonly actor?: string;
}

interface UserRewards {
  readonly uid: string;
  readonly rewardIds: string[];
  readonly amounts: bigint[];
}

/**
 * Takes back every reward batch `batchId` applied: one compensating debit per reward (`revert:<rewardId>`, kind
 * `debit`, the batch's id), each user's debits in one transaction under the user's lock (batch policy), exactly once
 * however often it runs or is interrupted (the debits are idempotent by operation id). A user whose balance is now
 * lower than what the batch gave is left unreverted and listed, never driven negative; the others are reverted. The
 * batch's open dead-letter entries are closed first, so that no replay adds to it any more.
 *
 * @throws {@link UnknownBatchError} for an unknown batch id
 * @throws {@link BatchRevertRefusedError} while the batch (or a replay of its entries) is still processing
 */
export async function revertBatch(
  context: RevertContext,
  batchId: string,
  options: RevertOptions = {},
): Promise<RevertReport> {
  const dryRun = options.dryRun ?? false;
  const description = options.reason !== undefined ? `revert: ${options.reason}` : undefined;
  const reasonProblem = description !== undefined ? descriptionProblem(description) : null;
  if (reasonProblem)
    throw new RevertRequestError(
      `the reason ${reasonProblem.reason} (with the "revert: " prefix; at most 492 characters)`,
    );
  await assertSettled(context.pool, batchId);

  let closedIds: string[] = [];
  if (dryRun) {
    const { rows } = await context.pool.query<{ id: bigint }>(
      `select id from dead_letters where batch_id = $1 and state = 'open'`,
      [batchId],
    );
    closedIds = rows.map((row) => row.id.toString());
  } else {
    closedIds = await closeDeadLetters(context.pool, batchId);
    if (closedIds.length > 0) await context.deadLetters?.unmirror(closedIds).catch(() => undefined);
  }

  let reverted = 0;
  let alreadyReverted = 0;
  const insufficientFunds: { uid: string; amount: string; balance: string }[] = [];
  const failed: { uid: string; reason: string; error: string }[] = [];
  const statusOf = (): RevertReport['status'] =>
    insufficientFunds.length === 0 && failed.length === 0 ? 'reverted' : 'partially_reverted';
  let failure: unknown;
  try {
    let after = '';
    for (;;) {
      const page = await appliedRewards(context.pool, batchId, after);
      if (page.length === 0) break;
      after = page[page.length - 1]!.uid;
      if (dryRun) {
        const preview = await previewPage(context.pool, page);
        reverted += preview.reverted;
        alreadyReverted += preview.alreadyReverted;
        insufficientFunds.push(...preview.insufficientFunds);
        continue;
      }
      const debits = page.flatMap((user) =>
        user.rewardIds.map((rewardId, i) => ({
          uid: user.uid,
          operationId: revertOperationId(rewardId),
          amount: user.amounts[i]!,
          ...(description !== undefined ? { description } : {}),
        })),
      );
      const result = await context.wallet.debitForBatch(debits, batchId);
      const owed = new Map(page.map((user) => [user.uid, user.amounts.reduce((sum, amount) => sum + amount, 0n)]));
      for (const user of result.users) {
        if (user.status === 'settled') {
          for (const operation of user.operations) {
            if (operation.outcome === 'applied') reverted += 1;
            else if (operation.outcome === 'duplicate') alreadyReverted += 1;
            else
              failed.push({
                uid: user.uid,
                reason: 'CONFLICT',
                error: `operation id ${operation.operationId} is taken by another ledger entry: ${operation.detail ?? ''}`,
              });
          }
        } else if (user.reason === 'INSUFFICIENT_FUNDS') {
          insufficientFunds.push({
            uid: user.uid,
            amount: String(owed.get(user.uid) ?? 0n),
            balance: String(await context.wallet.getBalance(user.uid)),
          });
        } else {
          failed.push({ uid: user.uid, reason: user.reason, error: user.error });
        }
      }
    }
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    if (!dryRun) {
      // recorded whatever happened: what was taken back before a failure stays taken back
      const status = failure === undefined ? statusOf() : 'partially_reverted';
      const event = await storeRevertStatus(context, batchId, status, failure === undefined).catch(() => null);
      if (event) await context.events?.publish(event);
      await recordAudit(context.pool, {
        actor: options.actor ?? 'library',
        action: 'batch.revert',
        target: `batch:${batchId}`,
        details: options.reason !== undefined ? { reason: options.reason } : {},
        result: {
          reverted,
          alreadyReverted,
          insufficientFunds,
          failed,
          closedDeadLetters: closedIds,
          status,
          ...(failure !== undefined ? { error: failure instanceof Error ? failure.message : String(failure) } : {}),
        },
      }).catch((error: unknown) =>
        context.logger.error({ err: error, batchId }, 'could not write the audit record of a batch revert'),
      );
      context.logger.warn(
        {
          batchId,
          reverted,
          alreadyReverted,
          insufficientFunds: insufficientFunds.length,
          failed: failed.length,
          actor: options.actor,
        },
        'batch reverted',
      );
    }
  }

  return {
    batchId,
    dryRun,
    reverted,
    alreadyReverted,
    insufficientFunds,
    failed,
    closedDeadLetters: closedIds.length,
    status: statusOf(),
  };
}

/**
 * Stores the status a revert run leaves; when the run finished (`finished`) and webhooks are configured, records the
 * batch's `batch.reverted` event in the same statement (none when the batch has one already: a run interrupted by an
 * error records none, and the first run that finishes does).
 */
async function storeRevertStatus(
  context: RevertContext,
  batchId: string,
  status: RevertReport['status'],
  finished: boolean,
): Promise<RecordedEvent | null> {
  // without the counts (a failed read) the status is still written, without an event
  const report = finished && context.events ? await getBatchReport(context.pool, batchId).catch(() => null) : null;
  return writeStatusWithEvent(context.pool, {
    batchId,
    status,
    type: report ? 'batch.reverted' : null,
    applied: report?.applied ?? 0,
    duplicate: report?.duplicate ?? 0,
    deadLettered: report?.deadLettered ?? 0,
    reverted: report?.reverted ?? 0,
    onlyIfChanged: false,
  });
}

/**
 * Fences the batch (ADR 0013: every chunk's and entry's fence moved on, after the statements in flight for them
 * commit; none sent later pays), closes its open dead-letter entries (`purged`: a replay that claims one afterwards
 * finds it purged and does nothing) and checks in the same transaction, after the fence, that no replay claimed
 * before is still running; if one is, nothing is closed and the revert is refused. The debits read the ledger after
 * this commits: a statement of a frozen worker has either committed by then (and is taken back) or pays nothing.
 */
async function closeDeadLetters(pool: pg.Pool, batchId: string): Promise<string[]> {
  return inTransaction(pool, async (client) => {
    await fenceBatch(client, batchId);
    const { rows } = await client.query<{ id: bigint }>(
      `update dead_letters set state = 'purged', purged_at = now() where batch_id = $1 and state = 'open' returning id`,
      [batchId],
    );
    await assertSettled(client, batchId, 'a replay of its dead-letter entries is still running');
    return rows.map((row) => row.id.toString());
  });
}

/** Refuses (before anything changes) a batch that is unknown or still has rewards to settle. */
async function assertSettled(pool: Queryable, batchId: string, why = 'it is still processing'): Promise<void> {
  const report = await getBatchReport(pool, batchId);
  if (!report)
    throw new UnknownBatchError(
      `no batch has id ${JSON.stringify(batchId)} (was it enqueued against this DATABASE_URL?)`,
    );
  const open = await pool.query('select 1 from reward_chunks where batch_id = $1 and completed_at is null limit 1', [
    batchId,
  ]);
  if (report.pending > 0 || (open.rowCount ?? 0) > 0) {
    throw new BatchRevertRefusedError(
      `batch ${JSON.stringify(batchId)} cannot be reverted now: ${why} (${report.pending} of ${report.total} rewards pending). Revert it once \`windfall batch ${batchId}\` shows it done.`,
    );
  }
}

/** The applied rewards of the next users (in uid order after `after`), each user's together. */
async function appliedRewards(pool: pg.Pool, batchId: string, after: string): Promise<UserRewards[]> {
  const { rows } = await pool.query<{ uid: string; reward_ids: string[]; amounts: string[] }>(
    `select uid, array_agg(operation_id order by operation_id) as reward_ids, array_agg(amount::text order by operation_id) as amounts
     from ledger_entries
     where batch_id = $1 and kind = 'reward' and uid > $2
     group by uid order by uid limit $3`,
    [batchId, after, USERS_PER_PAGE],
  );
  return rows.map((row) => ({
    uid: row.uid,
    rewardIds: row.reward_ids,
    amounts: row.amounts.map((amount) => BigInt(amount)),
  }));
}

/** What a run would do for `users`: their rewards not yet taken back, against their balances now. */
async function previewPage(
  pool: pg.Pool,
  users: readonly UserRewards[],
): Promise<{
  reverted: number;
  alreadyReverted: number;
  insufficientFunds: { uid: string; amount: string; balance: string }[];
}> {
  const ids = users.flatMap((user) => user.rewardIds.map(revertOperationId));
  const [done, wallets] = await Promise.all([
    pool.query<{ operation_id: string }>(
      'select operation_id from ledger_entries where operation_id = any($1::text[])',
      [ids],
    ),
    pool.query<{ uid: string; balance: bigint }>('select uid, balance from wallets where uid = any($1::text[])', [
      users.map((user) => user.uid),
    ]),
  ]);
  const taken = new Set(done.rows.map((row) => row.operation_id));
  const balances = new Map(wallets.rows.map((row) => [row.uid, row.balance]));
  let reverted = 0;
  let alreadyReverted = 0;
  const insufficientFunds: { uid: string; amount: string; balance: string }[] = [];
  for (const user of users) {
    let owed = 0n;
    let count = 0;
    user.rewardIds.forEach((rewardId, i) => {
      if (taken.has(revertOperationId(rewardId))) alreadyReverted += 1;
      else {
        owed += user.amounts[i]!;
        count += 1;
      }
    });
    const balance = balances.get(user.uid) ?? 0n;
    if (owed > balance) insufficientFunds.push({ uid: user.uid, amount: String(owed), balance: String(balance) });
    else reverted += count;
  }
  return { reverted, alreadyReverted, insufficientFunds };
}
