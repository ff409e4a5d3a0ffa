import type { LockPolicy } from '../lock/lock-policy.js';
import type { UserLocks } from '../lock/user-locks.js';
import type { Logger } from '../log/logger.js';
import type { ServiceGate } from '../services/service-gate.js';
import type { GroupSettlement } from './group-settlement.js';
import { LockRelease } from './lock-release.js';
import { LockRounds, locksToTake } from './lock-rounds.js';
import { SettlementLine } from './settlement-line.js';
import type { SettlingUser } from './settling-user.js';
import { TransactionGroups } from './transaction-groups.js';
import type { UserOutcome, UserTask } from './user-task.js';
import { INTERRUPTED } from './user-task.js';

/** Options of {@link SettlementPipeline}. */
export interface SettlementPipelineOptions {
  readonly locks: UserLocks;
  /** The reward lock policy: how long a busy user's lock is waited for. */
  readonly policy: LockPolicy;
  readonly groups: GroupSettlement;
  /** Paused while Redis cannot work: no lock is taken then, and the users wait in line. */
  readonly redisGate: ServiceGate;
  /**
   * PostgreSQL's gate: a lock that stayed busy through the policy while PostgreSQL paused is waited for again rather
   * than failed (its holder may be a user of this process waiting for PostgreSQL). Default: none.
   */
  readonly postgresGate?: ServiceGate;
  /** Transactions in flight at once (WINDFALL_CONCURRENCY). */
  readonly transactions: number;
  /** Most users in one transaction (WINDFALL_USERS_PER_TRANSACTION). */
  readonly usersPerTransaction: number;
  /** Most rewards in one transaction, unless one user alone has more. */
  readonly rewardsPerTransaction: number;
  /** Aborted when the worker stops: users not in a transaction yet are interrupted (their locks given back). */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** Called when users leave the line (a job waiting to load may be admitted). Default: none. */
  readonly onLineShortened?: () => void;
}

/**
 * The users of every job of a worker process, from the line to their transaction, through parts it owns:
 *
 *  1. **the line** ({@link SettlementLine}): by job rank, then arrival;
 *  2. **locks** ({@link LockRounds}): taken ahead of the transactions, many users per Redis round trip, about two
 *     transactions' worth per slot ahead ({@link locksToTake}); a lock found busy leaves the line and is waited for
 *     under the reward policy, then its user goes first;
 *  3. **transactions** ({@link TransactionGroups}): at most `transactions` at once, each settling up to
 *     `usersPerTransaction` locked users (all of each user's rewards inside it) through {@link GroupSettlement};
 *  4. **releases** ({@link LockRelease}): finished users' locks are released together (token-checked), in the same
 *     round trip as the next locks taken, or on their own after 5 ms.
 *
 * A user's outcome is delivered once its lock is released. While Redis cannot work, no lock is taken and the users
 * wait in line; nothing is failed for it.
 */
export class SettlementPipeline {
  private readonly line = new SettlementLine();
  private readonly releases: LockRelease;
  private readonly rounds: LockRounds;
  private readonly groups: TransactionGroups;

  constructor(private readonly options: SettlementPipelineOptions) {
    const { locks, redisGate, signal } = options;
    this.releases = new LockRelease({ locks, redisGate, logger: options.logger });
    this.rounds = new LockRounds({
      locks,
      policy: options.policy,
      redisGate,
      postgresGate: options.postgresGate,
      signal,
      onLocked: (user, waited) => this.groups.add(user, waited),
      onRequeue: (users) => this.line.putBack(users),
      onRoundEnd: () => this.pump(),
    });
    this.groups = new TransactionGroups({
      settlement: options.groups,
      transactions: options.transactions,
      usersPerTransaction: options.usersPerTransaction,
      rewardsPerTransaction: options.rewardsPerTransaction,
      onFinished: (user) => this.releases.release(user),
      onTransactionEnd: () => this.pump(),
    });
    signal.addEventListener('abort', () => this.pump(), { once: true });
    redisGate.onOpen(() => this.pump());
  }

  /** Users waiting for their lock round (not locked yet). */
  get usersInLine(): number {
    return this.line.length;
  }

  /**
   * Settles the users of a job: resolves with an outcome per task, in order, once every lock is given back. The users
   * join the line behind those of equal or lower `rank` (the job's BullMQ priority; default 0, the first), ahead of
   * any of higher rank: a small batch's users do not wait behind the big batch's users already in line.
   */
  settle(tasks: readonly UserTask[], rank = 0): Promise<UserOutcome[]> {
    const users: SettlingUser[] = [];
    const outcomes = tasks.map((task) => new Promise<UserOutcome>((done) => users.push({ task, rank, done })));
    this.line.join(users);
    this.pump();
    return Promise.all(outcomes);
  }

  private pump(): void {
    const { signal, transactions, usersPerTransaction } = this.options;
    if (signal.aborted) this.interruptUnstarted();
    this.groups.start();
    if (signal.aborted || !this.options.redisGate.isOpen) return;
    const locked = this.groups.lockedWaiting + this.rounds.locking;
    const count = locksToTake({ queued: this.line.length, locked, transactions, usersPerTransaction });
    if (count === 0) return;
    const users = this.line.take(count);
    this.options.onLineShortened?.();
    this.rounds.round(users, this.releases.take());
  }

  /** The worker is stopping: users in line are interrupted; locked users not in a transaction give their lock back. */
  private interruptUnstarted(): void {
    const inLine = this.line.takeAll();
    for (const user of inLine) user.done(INTERRUPTED);
    for (const user of this.groups.takeLockedWaiting()) {
      user.outcome = INTERRUPTED;
      this.releases.release(user);
    }
    if (inLine.length > 0) this.options.onLineShortened?.();
  }

  /** Gives back the locks waiting for release and waits for releases on their way (the worker is stopping). */
  close(): Promise<void> {
    return this.releases.close();
  }
}
