import type { GroupSettlement } from './group-settlement.js';
import type { SettlingUser } from './settling-user.js';
import type { UserOutcome } from './user-task.js';
import { failedOutcome } from './user-task.js';

/** How big one transaction's group may be. */
export interface GroupLimits {
  /** Most users in one transaction (WINDFALL_USERS_PER_TRANSACTION). */
  readonly usersPerTransaction: number;
  /** Most rewards in one transaction, unless one user alone has more (then that user goes alone). */
  readonly rewardsPerTransaction: number;
}

/**
 * The next transaction's users from `ready` (locked users, in order): the first, then the next ones of the same
 * source kind (chunk or replay) with a uid not in the group yet, up to the limits. The others stay, in their order.
 */
export function takeGroup(
  ready: readonly SettlingUser[],
  { usersPerTransaction, rewardsPerTransaction }: GroupLimits,
): { group: SettlingUser[]; rest: SettlingUser[] } {
  const first = ready[0]!;
  const group: SettlingUser[] = [first];
  const uids = new Set([first.task.uid]);
  let rewards = first.task.rewards;
  const rest: SettlingUser[] = [];
  for (let i = 1; i < ready.length; i += 1) {
    const user = ready[i]!;
    if (
      group.length < usersPerTransaction &&
      user.task.source.kind === first.task.source.kind &&
      !uids.has(user.task.uid) &&
      rewards + user.task.rewards <= rewardsPerTransaction
    ) {
      group.push(user);
      uids.add(user.task.uid);
      rewards += user.task.rewards;
    } else rest.push(user);
  }
  return { group, rest };
}

/** Options of {@link TransactionGroups}. */
export interface TransactionGroupsOptions extends GroupLimits {
  /** Runs each group (its statement, halving, one user per statement) and reports each user's outcome. */
  readonly settlement: GroupSettlement;
  /** Transactions in flight at once (WINDFALL_CONCURRENCY). */
  readonly transactions: number;
  /** A user's outcome is known (set on it): its lock is to be given back. */
  readonly onFinished: (user: SettlingUser) => void;
  /** A transaction ended: another may start. */
  readonly onTransactionEnd: () => void;
}

/** The outcome of a user the settlement ended without an outcome for (not expected). */
const noOutcome = (): UserOutcome =>
  failedOutcome('UNKNOWN', true, 'internal: the settlement gave no outcome for this user');

/**
 * Locked users waiting for their transaction, and the transactions: at most `transactions` at once, each settling a
 * group (see {@link takeGroup}) through {@link GroupSettlement}. Each user is finished as soon as its own outcome is
 * known. Users whose lock was waited for go first.
 */
export class TransactionGroups {
  private ready: SettlingUser[] = [];
  private running = 0;

  constructor(private readonly options: TransactionGroupsOptions) {}

  /** Locked users waiting for a transaction. */
  get lockedWaiting(): number {
    return this.ready.length;
  }

  /** Transactions in flight. */
  get inFlight(): number {
    return this.running;
  }

  /** Adds a locked user: behind the others, or ahead of them when `first` (its lock was waited for). */
  add(user: SettlingUser, first = false): void {
    if (first) this.ready.unshift(user);
    else this.ready.push(user);
  }

  /** Takes every locked user not in a transaction yet (the worker is stopping). */
  takeLockedWaiting(): SettlingUser[] {
    const ready = this.ready;
    this.ready = [];
    return ready;
  }

  /** Starts transactions for the waiting users while fewer than `transactions` are in flight. */
  start(): void {
    while (this.running < this.options.transactions && this.ready.length > 0) {
      const { group, rest } = takeGroup(this.ready, this.options);
      this.ready = rest;
      this.run(group);
    }
  }

  private run(group: readonly SettlingUser[]): void {
    this.running += 1;
    const userOf = new Map(group.map((user) => [user.task, user]));
    // each user is finished (its lock given back, its outcome delivered) as soon as its own outcome is known
    void this.options.settlement
      .settle(
        group.map((user) => user.task),
        (task, outcome) => {
          const user = userOf.get(task)!;
          userOf.delete(task);
          user.outcome = outcome;
          this.options.onFinished(user);
        },
      )
      .finally(() => {
        this.running -= 1;
        for (const user of userOf.values()) {
          user.outcome = noOutcome();
          this.options.onFinished(user);
        }
        this.options.onTransactionEnd();
      });
  }
}
