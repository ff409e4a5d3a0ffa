import type pg from 'pg';
import type { Redis, Cluster } from 'ioredis';
import { DEFAULT_CONFIG } from '../config/config.js';
import { forEachLimited } from '../concurrency/semaphore.js';
import { queryBuilder, runQuery } from '../db/query-builder.js';
import type { DeadLetterReason } from '../db/schema.js';
import type { LockPolicy } from '../lock/lock-policy.js';
import { BATCH_POLICY, DEFAULT_POLICY, REWARD_POLICY } from '../lock/lock-policy.js';
import type { LockStatus } from '../lock/user-locks.js';
import { UserLocks } from '../lock/user-locks.js';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import { checkAmount } from '../money/amount.js';
import { identifierProblem, descriptionProblem, rewardIdProblem } from '../rewards/field-rules.js';
import { recordAudit } from '../audit/audit-trail.js';
import type { UserApplyResult } from './apply-user-operations.js';
import type { LedgerOperation, OperationOutcome } from '../ledger/ledger-operation.js';
import { describeConflict } from '../ledger/ledger-operation.js';
import { applyUnderUserLock, type LockedApplyContext } from './locked-user-transaction.js';
import { classifyWalletFailure } from './wallet-failure.js';
import { InvalidOperationError, OperationConflictError } from './wallet-errors.js';
import type { Queryable } from '../db/queryable.js';

/** Options of {@link WalletService}. */
export interface WalletServiceOptions {
  readonly pool: pg.Pool;
  readonly redis: Redis | Cluster;
  /** Redis key prefix of the locks. Default `windfall`. */
  readonly prefix?: string;
  /** Lock policies by use. Defaults: the seed's default, batch and reward policies. */
  readonly policies?: { readonly default?: LockPolicy; readonly batch?: LockPolicy; readonly reward?: LockPolicy };
  /** Users processed at once by the batch methods. Default 4 (`WINDFALL_CONCURRENCY`'s). */
  readonly concurrency?: number;
  readonly logger?: Logger;
  readonly metrics?: WindfallMetrics;
}

/** Per-call options. */
export interface CallOptions {
  /** Cancels lock waits (→ LockTimeoutError). */
  readonly signal?: AbortSignal;
  /** Epoch ms after which lock waits end (→ LockTimeoutError). */
  readonly deadline?: number;
}

/** A single credit or debit. */
export interface SingleOperationOptions extends CallOptions {
  /** The idempotency key: repeating a call with the same id is a no-op reported as a duplicate. */
  readonly operationId: string;
  readonly description?: string;
}

/** The result of {@link WalletService.addBalance} / {@link WalletService.withdrawBalance}. */
export interface SingleOperationResult {
  readonly uid: string;
  readonly operationId: string;
  /** `applied` now, or `duplicate` when this id was applied before (nothing changed). */
  readonly outcome: 'applied' | 'duplicate';
  readonly balance: bigint;
}

/** One operation of {@link WalletService.batchBalanceOperation}. */
export interface BalanceOperation {
  readonly operationId: string;
  readonly uid: string;
  readonly type: 'add' | 'withdraw';
  readonly amount: bigint | number | string;
  readonly description?: string;
}

/** A reward of {@link WalletService.batchAddBalanceForRewards}. */
export interface RewardInput {
  readonly rewardId: string;
  readonly uid: string;
  readonly amount: bigint | number | string;
  readonly description?: string;
}

/** What happened to one user of a batch call. */
export type UserReport =
  | {
      readonly uid: string;
      readonly status: 'settled';
      readonly balance: bigint | null;
      readonly operations: readonly {
        readonly operationId: string;
        readonly outcome: OperationOutcome;
        readonly detail?: string;
      }[];
    }
  | {
      readonly uid: string;
      readonly status: 'failed';
      readonly reason: DeadLetterReason;
      readonly transient: boolean;
      readonly error: string;
    };

/** The result of a batch call: one report per user, and totals. */
export interface BatchCallReport {
  readonly users: readonly UserReport[];
  readonly applied: number;
  readonly duplicate: number;
  readonly conflict: number;
  /** Operations of users that failed as a whole (busy lock, insufficient funds, …). */
  readonly failed: number;
}

interface PreparedOperation extends LedgerOperation {
  readonly uid: string;
}

/**
 * The seed design's wallet operations as a library, usable without the queue: each user's operations run in one
 * PostgreSQL transaction while holding that user's Redis lock; every operation carries an id and re-applying it is
 * a no-op reported as a duplicate; the same id with another user or amount is a conflict.
 */
export class WalletService {
  readonly locks: UserLocks;
  private readonly lockedApply: LockedApplyContext;
  private readonly policies: { default: LockPolicy; batch: LockPolicy; reward: LockPolicy };
  private readonly concurrency: number;

  constructor(private readonly options: WalletServiceOptions) {
    const logger = options.logger ?? silentLogger();
    this.locks = new UserLocks(options.redis, {
      prefix: options.prefix ?? DEFAULT_CONFIG.prefix,
      logger,
      ...(options.metrics ? { metrics: options.metrics } : {}),
    });
    this.lockedApply = { db: options.pool, locks: this.locks, logger, metrics: options.metrics };
    this.policies = {
      default: options.policies?.default ?? DEFAULT_POLICY,
      batch: options.policies?.batch ?? BATCH_POLICY,
      reward: options.policies?.reward ?? REWARD_POLICY,
    };
    this.concurrency = options.concurrency ?? DEFAULT_CONFIG.concurrency;
  }

  /** Credits `amount` minor units to `uid` (default lock policy). */
  async addBalance(
    uid: string,
    amount: bigint | number | string,
    options: SingleOperationOptions,
  ): Promise<SingleOperationResult> {
    return this.single(uid, amount, 'credit', options);
  }

  /**
   * Debits `amount` minor units from `uid` (default lock policy).
   * @throws InsufficientFundsError when the balance is lower than `amount` (nothing changes).
   */
  async withdrawBalance(
    uid: string,
    amount: bigint | number | string,
    options: SingleOperationOptions,
  ): Promise<SingleOperationResult> {
    return this.single(uid, amount, 'debit', options);
  }

  /**
   * Mixed credits and debits (batch lock policy), grouped by user: each user's operations in one transaction,
   * all or nothing for that user (a debit that would overdraw fails the user's whole group; the balance is
   * checked after the group's net change). Users are independent. Invalid input throws before anything runs.
   */
  async batchBalanceOperation(
    operations: readonly BalanceOperation[],
    options: CallOptions = {},
  ): Promise<BatchCallReport> {
    const prepared = operations.map((operation, index) =>
      this.prepare(
        operation.uid,
        operation.operationId,
        operation.amount,
        operation.type === 'withdraw' ? 'debit' : 'credit',
        operation.description,
        index,
        operation.type,
      ),
    );
    return this.runGrouped(prepared, this.policies.batch, options);
  }

  /**
   * Debits that take back rewards of batch `batchId` (`windfall batch revert`): batch lock policy, grouped by user,
   * each user's debits in one transaction, all or nothing — a user whose balance would go below zero fails whole
   * (`INSUFFICIENT_FUNDS`) and is never driven negative. Entries are kind `debit` and carry the batch's id;
   * idempotent by operation id (a repeat is reported as a duplicate).
   */
  async debitForBatch(
    debits: readonly { uid: string; operationId: string; amount: bigint; description?: string }[],
    batchId: string,
    options: CallOptions = {},
  ): Promise<BatchCallReport> {
    const prepared = debits.map((debit, index) =>
      this.prepare(debit.uid, debit.operationId, debit.amount, 'debit', debit.description, index, undefined, true),
    );
    return this.runGrouped(prepared, this.policies.batch, options, batchId);
  }

  /**
   * The seed's batch rewards (reward lock policy: waits up to about 57 s for a busy user), grouped by user,
   * different users concurrently (at most `concurrency` at once).
   */
  async batchAddBalanceForRewards(
    rewards: readonly RewardInput[],
    options: CallOptions = {},
  ): Promise<BatchCallReport> {
    const prepared = rewards.map((reward, index) =>
      this.prepare(reward.uid, reward.rewardId, reward.amount, 'reward', reward.description, index),
    );
    return this.runGrouped(prepared, this.policies.reward, options);
  }

  /** The balance of `uid` (0 when the wallet does not exist). */
  async getBalance(uid: string): Promise<bigint> {
    return readBalance(this.options.pool, uid);
  }

  /** The latest ledger entries of `uid`, newest first. Default limit 20. */
  async getLedger(uid: string, limit = 20): Promise<LedgerEntryView[]> {
    return readLedger(this.options.pool, uid, limit);
  }

  /** The seed's GetLockStatus. */
  getLockStatus(uid: string): Promise<LockStatus> {
    return this.locks.status(uid);
  }

  /**
   * The seed's ForceReleaseLock: deletes the lock whoever holds it, logs a warning, and records it in the audit trail
   * (`lock.force_release`, also when the lock was not held). Answers the lock as it was. Default actor `library`.
   */
  async forceReleaseLock(uid: string, options: { actor?: string; reason?: string } = {}): Promise<LockStatus> {
    const actor = options.actor ?? 'library';
    const previous = await this.locks.forceRelease(uid, actor);
    await recordAudit(this.options.pool, {
      actor,
      action: 'lock.force_release',
      target: `uid:${uid}`,
      details: options.reason !== undefined ? { reason: options.reason } : {},
      result: { released: previous.locked, previous },
    });
    return previous;
  }

  private async single(
    uid: string,
    amount: bigint | number | string,
    kind: 'credit' | 'debit',
    options: SingleOperationOptions,
  ): Promise<SingleOperationResult> {
    const operation = this.prepare(uid, options.operationId, amount, kind, options.description, 0);
    const result: UserApplyResult = await applyUnderUserLock(this.lockedApply, uid, [operation], {
      policy: this.policies.default,
      batchId: null,
      signal: options.signal,
      deadline: options.deadline,
    });
    const outcome = result.results[0];
    if (!outcome) throw new Error('internal: no outcome for the operation');
    if (outcome.outcome === 'conflict') {
      throw new OperationConflictError(
        operation.operationId,
        outcome.existing
          ? describeConflict(uid, operation.amount, outcome.existing)
          : 'it was used for another payment',
      );
    }
    return {
      uid,
      operationId: operation.operationId,
      outcome: outcome.outcome === 'applied' ? 'applied' : 'duplicate',
      balance: result.balance ?? (await this.getBalance(uid)),
    };
  }

  private prepare(
    uid: string,
    operationId: string,
    amount: bigint | number | string,
    kind: LedgerOperation['kind'],
    description: string | undefined,
    index: number,
    type?: string,
    revertDebit = false,
  ): PreparedOperation {
    const where = `operation ${index + 1}${typeof operationId === 'string' ? ` (${JSON.stringify(operationId)})` : ''}`;
    const uidProblem = identifierProblem(uid);
    if (uidProblem) throw new InvalidOperationError(`${where}: uid ${uidProblem.reason}`);
    // a revert's debit id is `revert:` + a rewardId accepted earlier (up to 135 characters); any other id may not use
    // the prefix, so that no operation can take the id of a revert to come
    const idProblem = revertDebit ? null : rewardIdProblem(operationId);
    if (idProblem) throw new InvalidOperationError(`${where}: operation id ${idProblem.reason}`);
    if (type !== undefined && type !== 'add' && type !== 'withdraw') {
      throw new InvalidOperationError(`${where}: type must be "add" or "withdraw", got ${JSON.stringify(type)}`);
    }
    const checked = checkAmount(amount);
    if (!checked.ok) throw new InvalidOperationError(`${where}: amount ${checked.reason}`);
    const descProblem = descriptionProblem(description);
    if (descProblem) throw new InvalidOperationError(`${where}: description ${descProblem.reason}`);
    return {
      uid,
      operationId,
      amount: kind === 'debit' ? -checked.value : checked.value,
      kind,
      description: description ?? null,
    };
  }

  private async runGrouped(
    operations: readonly PreparedOperation[],
    policy: LockPolicy,
    options: CallOptions,
    batchId: string | null = null,
  ): Promise<BatchCallReport> {
    const groups = new Map<string, PreparedOperation[]>();
    for (const operation of operations) {
      const group = groups.get(operation.uid) ?? [];
      group.push(operation);
      groups.set(operation.uid, group);
    }
    const reports = new Map<string, UserReport>();
    let applied = 0;
    let duplicate = 0;
    let conflict = 0;
    let failed = 0;
    await forEachLimited(groups, this.concurrency, async ([uid, group]) => {
      try {
        const result = await applyUnderUserLock(this.lockedApply, uid, group, {
          policy,
          batchId,
          signal: options.signal,
          deadline: options.deadline,
        });
        const outcomes = result.results.map((r, index) => {
          if (r.outcome === 'applied') applied += 1;
          else if (r.outcome === 'conflict') conflict += 1;
          else duplicate += 1;
          const op = group[index]!;
          return r.outcome === 'conflict' && r.existing
            ? { operationId: r.operationId, outcome: r.outcome, detail: describeConflict(uid, op.amount, r.existing) }
            : {
                operationId: r.operationId,
                outcome: r.outcome === 'already_applied' ? ('duplicate' as const) : r.outcome,
              };
        });
        reports.set(uid, { uid, status: 'settled', balance: result.balance, operations: outcomes });
      } catch (error) {
        const failure = classifyWalletFailure(error);
        failed += group.length;
        reports.set(uid, {
          uid,
          status: 'failed',
          reason: failure.reason,
          transient: failure.transient,
          error: failure.message,
        });
      }
    });
    return { users: [...groups.keys()].map((uid) => reports.get(uid)!), applied, duplicate, conflict, failed };
  }
}

/** A ledger entry as shown to people and JSON: money as a digit string. */
export interface LedgerEntryView {
  readonly operationId: string;
  readonly amount: string;
  readonly kind: string;
  readonly batchId: string | null;
  readonly description: string | null;
  readonly createdAt: string;
}

/** The balance of `uid` (0 when the wallet does not exist). */
export async function readBalance(db: Queryable, uid: string): Promise<bigint> {
  const { db: qb } = await queryBuilder();
  const [row] = await runQuery(db, qb.selectFrom('wallets').select('balance').where('uid', '=', uid));
  return row?.balance ?? 0n;
}

/** The balances of those of `uids` that have a wallet (a user without one has none: show 0). */
export async function readBalances(db: Queryable, uids: readonly string[]): Promise<Map<string, bigint>> {
  const { db: qb, sql } = await queryBuilder();
  const rows = await runQuery(
    db,
    qb
      .selectFrom('wallets')
      .select(['uid', 'balance'])
      .where((eb) => eb('uid', '=', eb.fn.any(sql<string[]>`${sql.val(uids)}::text[]`))),
  );
  return new Map(rows.map((row) => [row.uid, row.balance]));
}

/** The latest `limit` ledger entries of `uid`, newest first. */
export async function readLedger(db: Queryable, uid: string, limit: number): Promise<LedgerEntryView[]> {
  const { db: qb } = await queryBuilder();
  const rows = await runQuery(
    db,
    qb
      .selectFrom('ledger_entries')
      .select(['operation_id', 'amount', 'kind', 'batch_id', 'description', 'created_at'])
      .where('uid', '=', uid)
      .orderBy('id', 'desc')
      .limit(limit),
  );
  return rows.map((row) => ({
    operationId: row.operation_id,
    amount: row.amount.toString(),
    kind: row.kind,
    batchId: row.batch_id,
    description: row.description,
    createdAt: row.created_at.toISOString(),
  }));
}
