import { LockBusyError, LockTimeoutError } from '../lock/lock-errors.js';
import type { LockPolicy } from '../lock/lock-policy.js';
import type { BusyLock, UserLocks } from '../lock/user-locks.js';
import { describeRedisError, isRedisUnavailable } from '../services/redis-errors.js';
import type { ServiceGate } from '../services/service-gate.js';
import type { SettlingUser } from './settling-user.js';
import { deliverAfterRelease } from './settling-user.js';
import type { UserOutcome } from './user-task.js';
import { failedOutcome, INTERRUPTED } from './user-task.js';

/** Most lock keys taken or released in one Redis round trip. */
export const MAX_LOCKS_PER_ROUND = 512;

/** What {@link locksToTake} decides from. */
export interface LockDemand {
  /** Users waiting in line. */
  readonly queued: number;
  /** Users locked (or being locked) and not in a transaction yet. */
  readonly locked: number;
  /** Transactions in flight at once (WINDFALL_CONCURRENCY). */
  readonly transactions: number;
  /** Most users in one transaction (WINDFALL_USERS_PER_TRANSACTION). */
  readonly usersPerTransaction: number;
}

/**
 * How many users' locks the next round takes: enough to keep about two transactions' worth locked per slot
 * (`2 × transactions × usersPerTransaction`), at most {@link MAX_LOCKS_PER_ROUND} (512); none (0) for a handful of
 * users (fewer than a transaction's worth) while others are locked already: fewer, fuller round trips.
 */
export function locksToTake({ queued, locked, transactions, usersPerTransaction }: LockDemand): number {
  const wanted = 2 * transactions * usersPerTransaction - locked;
  if (queued > 0 && wanted > 0 && (wanted >= Math.min(usersPerTransaction, queued) || locked === 0))
    return Math.min(wanted, queued, MAX_LOCKS_PER_ROUND);
  return 0;
}

/** Options of {@link LockRounds}. */
export interface LockRoundsOptions {
  readonly locks: UserLocks;
  /** The reward lock policy: how long a busy user's lock is waited for. */
  readonly policy: LockPolicy;
  /** Faulted when Redis cannot work: the users of the round go back to the line. */
  readonly redisGate: ServiceGate;
  /**
   * PostgreSQL's gate: a lock that stayed busy through the policy while PostgreSQL paused is waited for again rather
   * than failed (its holder may be a user of this process waiting for PostgreSQL). Default: none.
   */
  readonly postgresGate?: ServiceGate | undefined;
  /** Aborted when the worker stops: the users of a round or of a wait are interrupted. */
  readonly signal: AbortSignal;
  /** A user's lock is taken (set on it); `waited` when it was found busy first (such a user goes first). */
  readonly onLocked: (user: SettlingUser, waited: boolean) => void;
  /** Users whose locks could not be taken now: they go back to the head of the line. */
  readonly onRequeue: (users: readonly SettlingUser[]) => void;
  /** A round or a wait ended: its users are locked, back in line, or have their outcome. */
  readonly onRoundEnd: () => void;
}

const lockError = (error: unknown): UserOutcome =>
  failedOutcome('UNKNOWN', true, `could not take the user's lock: ${describeRedisError(error)}`);

/**
 * Takes users' locks many per Redis round trip (one script doing `SET NX PX` per key), giving back the finished
 * users' locks in the same round trip. A lock found busy is waited for under the policy, off the line. Errors end as
 * outcomes: Redis unavailable faults its gate and puts the users back in line (nothing is failed for it); the worker
 * stopping interrupts them; a lock still busy after the policy fails its user (`LOCK_BUSY`, transient) unless
 * PostgreSQL paused during the wait (then the user goes back in line); any other error fails them (`UNKNOWN`,
 * transient).
 */
export class LockRounds {
  private lockingUsers = 0;

  constructor(private readonly options: LockRoundsOptions) {}

  /** Users whose round is in flight. */
  get locking(): number {
    return this.lockingUsers;
  }

  /**
   * Takes `users`' locks in one round trip, releasing `releasing`'s locks in the same one (their outcomes are
   * delivered once it answers; when it fails, their locks expire by their TTL).
   */
  round(users: readonly SettlingUser[], releasing: readonly SettlingUser[]): void {
    this.lockingUsers += users.length;
    const { locks, policy, signal } = this.options;
    locks
      .exchange(
        releasing.map((user) => user.handle!),
        users.map((user) => user.task.uid),
        policy,
        { signal },
      )
      .then(
        ({ acquired }) => {
          deliverAfterRelease(releasing);
          this.lockingUsers -= users.length;
          acquired.forEach((outcome, i) => {
            const user = users[i]!;
            if ('busy' in outcome) this.waitForLock(user, outcome);
            else {
              user.handle = outcome;
              this.options.onLocked(user, false);
            }
          });
          this.options.onRoundEnd();
        },
        (error: unknown) => {
          this.lockingUsers -= users.length;
          // the script ran whole or not at all: the locks to release expire by their TTL
          deliverAfterRelease(releasing);
          if (error instanceof LockTimeoutError || signal.aborted) {
            for (const user of users) user.done(INTERRUPTED);
          } else if (isRedisUnavailable(error)) {
            this.options.redisGate.fault(error);
            this.options.onRequeue(users);
          } else {
            for (const user of users) user.done(lockError(error));
          }
          this.options.onRoundEnd();
        },
      );
  }

  /** A busy lock: waited for under the policy, off the line. */
  private waitForLock(user: SettlingUser, busy: BusyLock): void {
    const { signal } = this.options;
    this.options.locks.continueAcquire(busy, { signal }).then(
      (handle) => {
        user.handle = handle;
        this.options.onLocked(user, true);
        this.options.onRoundEnd();
      },
      (error: unknown) => {
        if (error instanceof LockBusyError && this.outageDuring(busy.started)) {
          // the lock may have stayed held only because its holder here waited for PostgreSQL: no attempt is spent on
          // an outage, so the user goes back in line for a fresh wait under the policy
          this.options.onRequeue([user]);
        } else if (error instanceof LockBusyError) user.done(failedOutcome('LOCK_BUSY', true, error.message));
        else if (error instanceof LockTimeoutError || signal.aborted) user.done(INTERRUPTED);
        else if (isRedisUnavailable(error)) {
          this.options.redisGate.fault(error);
          this.options.onRequeue([user]);
        } else user.done(lockError(error));
        this.options.onRoundEnd();
      },
    );
  }

  /** True when PostgreSQL paused since `since` (a `performance.now()` time), or is paused now. */
  private outageDuring(since: number): boolean {
    const gate = this.options.postgresGate;
    return gate !== undefined && (!gate.isOpen || gate.lastResumedAt > since);
  }
}
