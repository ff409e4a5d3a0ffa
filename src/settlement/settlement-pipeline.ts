import { LockBusyError, LockTimeoutError } from '../lock/lock-errors.js';
import type { LockPolicy } from '../lock/lock-policy.js';
import type { BusyLock, LockHandle, UserLocks } from '../lock/user-locks.js';
import type { Logger } from '../log/logger.js';
import { describeRedisError, isRedisUnavailable } from '../services/redis-errors.js';
import type { GroupSettlement } from './group-settlement.js';
import type { ServiceGate } from '../services/service-gate.js';
import type { UserOutcome, UserTask } from './user-task.js';
import { INTERRUPTED } from './user-task.js';

/** Longest a finished user's lock waits to be released with others (or with the next locks taken), ms. */
const RELEASE_DELAY_MS = 5;
/** Most lock keys taken or released in one Redis round trip. */
const MAX_LOCKS_PER_ROUND = 512;

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
   * than failed (its holder may be a user of this process waiting for PostgreSQL).
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
  /** Called when users leave the line (a job waiting to load may be admitted). */
  readonly onLineShortened?: () => void;
}

interface Entry {
  readonly task: UserTask;
  /** The job's BullMQ priority: the line is kept in this order (lower first), then in arrival order. */
  readonly rank: number;
  handle?: LockHandle;
  outcome?: UserOutcome;
  readonly done: (outcome: UserOutcome) => void;
}

/**
 * The users of every job of a worker process, from the line to their transaction:
 *
 *  1. **locks**: taken ahead of the transactions, many users per Redis round trip (one script doing `SET NX PX` per
 *     key), about two transactions' worth per slot ahead; a lock found busy leaves the line and is waited for under
 *     the reward policy, then its user goes first;
 *  2. **transactions**: at most `transactions` at once, each settling up to `usersPerTransaction` locked users (all
 *     of each user's rewards inside it) through {@link GroupSettlement};
 *  3. **releases**: finished users' locks are released together (token-checked), in the same round trip as the next
 *     locks taken, or on their own after {@link RELEASE_DELAY_MS}.
 *
 * A user's outcome is delivered once its lock is released. While Redis cannot work, no lock is taken and the users
 * wait in line; nothing is failed for it.
 */
export class SettlementPipeline {
  private waiting: Entry[] = [];
  private head = 0;
  private ready: Entry[] = [];
  private lockingUsers = 0;
  private running = 0;
  private releasing: Entry[] = [];
  private releaseTimer: NodeJS.Timeout | undefined;
  private readonly releasesInFlight = new Set<Promise<unknown>>();

  constructor(private readonly options: SettlementPipelineOptions) {
    options.signal.addEventListener('abort', () => this.pump(), { once: true });
    options.redisGate.onOpen(() => this.pump());
  }

  /** Users waiting for their lock round (not locked yet). */
  get usersInLine(): number {
    return this.waiting.length - this.head;
  }

  /**
   * Settles the users of a job: resolves with an outcome per task, in order, once every lock is given back. The users
   * join the line behind those of equal or lower `rank` (the job's BullMQ priority; default 0, the first), ahead of
   * any of higher rank: a small batch's users do not wait behind the big batch's users already in line.
   */
  settle(tasks: readonly UserTask[], rank = 0): Promise<UserOutcome[]> {
    const entries: Entry[] = [];
    const outcomes = tasks.map((task) => new Promise<UserOutcome>((done) => entries.push({ task, rank, done })));
    const last = this.waiting[this.waiting.length - 1];
    if (this.usersInLine === 0 || last!.rank <= rank) {
      for (const entry of entries) this.waiting.push(entry);
    } else {
      let at = this.head;
      while (this.waiting[at]!.rank <= rank) at += 1;
      // (the users already taken from the line are dropped on the way)
      this.waiting = this.waiting.slice(this.head, at).concat(entries, this.waiting.slice(at));
      this.head = 0;
    }
    this.pump();
    return Promise.all(outcomes);
  }

  private pump(): void {
    const { signal, transactions, usersPerTransaction } = this.options;
    if (signal.aborted) this.interruptUnstarted();
    while (this.running < transactions && this.ready.length > 0) this.startGroup(this.takeGroup());
    if (signal.aborted || !this.options.redisGate.isOpen) return;
    const queued = this.usersInLine;
    const locked = this.ready.length + this.lockingUsers;
    const wanted = 2 * transactions * usersPerTransaction - locked;
    // no round for a handful of users while plenty are locked already: fewer, fuller round trips
    if (queued > 0 && wanted > 0 && (wanted >= Math.min(usersPerTransaction, queued) || locked === 0)) {
      this.lockRound(Math.min(wanted, queued, MAX_LOCKS_PER_ROUND));
    }
  }

  /** The worker is stopping: users in line are interrupted; locked users not in a transaction give their lock back. */
  private interruptUnstarted(): void {
    const waiting = this.waiting.slice(this.head);
    this.waiting = [];
    this.head = 0;
    for (const entry of waiting) entry.done(INTERRUPTED);
    const ready = this.ready;
    this.ready = [];
    for (const entry of ready) {
      entry.outcome = INTERRUPTED;
      this.release(entry);
    }
    if (waiting.length > 0) this.options.onLineShortened?.();
  }

  /** The next transaction's users: the first locked user, then others of the same kind, up to the limits. */
  private takeGroup(): Entry[] {
    const { usersPerTransaction, rewardsPerTransaction } = this.options;
    const first = this.ready[0]!;
    const group: Entry[] = [first];
    const uids = new Set([first.task.uid]);
    let rewards = first.task.rewards;
    const rest: Entry[] = [];
    for (let i = 1; i < this.ready.length; i += 1) {
      const entry = this.ready[i]!;
      if (
        group.length < usersPerTransaction &&
        entry.task.source.kind === first.task.source.kind &&
        !uids.has(entry.task.uid) &&
        rewards + entry.task.rewards <= rewardsPerTransaction
      ) {
        group.push(entry);
        uids.add(entry.task.uid);
        rewards += entry.task.rewards;
      } else rest.push(entry);
    }
    this.ready = rest;
    return group;
  }

  private startGroup(group: Entry[]): void {
    this.running += 1;
    const entryOf = new Map(group.map((entry) => [entry.task, entry]));
    // each user's lock is given back (and its outcome delivered) as soon as its own outcome is known
    void this.options.groups
      .settle(
        group.map((entry) => entry.task),
        (task, outcome) => {
          const entry = entryOf.get(task)!;
          entryOf.delete(task);
          entry.outcome = outcome;
          this.release(entry);
        },
      )
      .finally(() => {
        this.running -= 1;
        for (const entry of entryOf.values()) {
          entry.outcome = {
            kind: 'failed',
            failure: {
              reason: 'UNKNOWN',
              transient: true,
              message: 'internal: the settlement gave no outcome for this user',
            },
          };
          this.release(entry);
        }
        this.pump();
      });
  }

  /** Takes the next `count` users' locks in one round trip, releasing the finished users' locks in the same one. */
  private lockRound(count: number): void {
    const batch = this.waiting.slice(this.head, this.head + count);
    this.head += batch.length;
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    this.options.onLineShortened?.();
    const releasing = this.takeReleases();
    this.lockingUsers += batch.length;
    const { locks, policy, signal } = this.options;
    locks
      .exchange(
        releasing.map((entry) => entry.handle!),
        batch.map((entry) => entry.task.uid),
        policy,
        { signal },
      )
      .then(
        ({ acquired }) => {
          this.finishReleases(releasing);
          this.lockingUsers -= batch.length;
          acquired.forEach((outcome, i) => {
            const entry = batch[i]!;
            if ('busy' in outcome) this.waitForLock(entry, outcome);
            else {
              entry.handle = outcome;
              this.ready.push(entry);
            }
          });
          this.pump();
        },
        (error: unknown) => {
          this.lockingUsers -= batch.length;
          // the script ran whole or not at all: the locks to release expire by their TTL
          this.finishReleases(releasing);
          if (error instanceof LockTimeoutError || signal.aborted) {
            for (const entry of batch) entry.done(INTERRUPTED);
          } else if (isRedisUnavailable(error)) {
            this.options.redisGate.fault(error);
            this.requeue(batch);
          } else {
            const message = `could not take the user's lock: ${describeRedisError(error)}`;
            for (const entry of batch)
              entry.done({ kind: 'failed', failure: { reason: 'UNKNOWN', transient: true, message } });
          }
          this.pump();
        },
      );
  }

  /** Puts users back at the head of the line (Redis could not take their locks). */
  private requeue(entries: readonly Entry[]): void {
    this.waiting.splice(this.head, 0, ...entries);
  }

  /** A busy lock: waited for under the policy, off the line; once taken, the user goes first. */
  private waitForLock(entry: Entry, busy: BusyLock): void {
    this.options.locks.continueAcquire(busy, { signal: this.options.signal }).then(
      (handle) => {
        entry.handle = handle;
        this.ready.unshift(entry);
        this.pump();
      },
      (error: unknown) => {
        if (error instanceof LockBusyError && this.outageDuring(busy.started)) {
          // the lock may have stayed held only because its holder here waited for PostgreSQL: no attempt is spent on
          // an outage, so the user goes back in line for a fresh wait under the policy
          this.requeue([entry]);
        } else if (error instanceof LockBusyError)
          entry.done({ kind: 'failed', failure: { reason: 'LOCK_BUSY', transient: true, message: error.message } });
        else if (error instanceof LockTimeoutError || this.options.signal.aborted) entry.done(INTERRUPTED);
        else if (isRedisUnavailable(error)) {
          this.options.redisGate.fault(error);
          this.requeue([entry]);
        } else {
          entry.done({
            kind: 'failed',
            failure: {
              reason: 'UNKNOWN',
              transient: true,
              message: `could not take the user's lock: ${describeRedisError(error)}`,
            },
          });
        }
        this.pump();
      },
    );
  }

  /** True when PostgreSQL paused since `since` (a `performance.now()` time), or is paused now. */
  private outageDuring(since: number): boolean {
    const gate = this.options.postgresGate;
    return gate !== undefined && (!gate.isOpen || gate.lastResumedAt > since);
  }

  /** Queues a finished user's lock for release; the outcome is delivered once it is released. */
  private release(entry: Entry): void {
    if (!entry.handle) {
      entry.done(entry.outcome ?? INTERRUPTED);
      return;
    }
    this.releasing.push(entry);
    if (this.releasing.length >= MAX_LOCKS_PER_ROUND / 2) this.flushReleases();
    else this.releaseTimer ??= setTimeout(() => this.flushReleases(), RELEASE_DELAY_MS);
  }

  private takeReleases(): Entry[] {
    clearTimeout(this.releaseTimer);
    this.releaseTimer = undefined;
    const entries = this.releasing;
    this.releasing = [];
    return entries;
  }

  private flushReleases(): void {
    const entries = this.takeReleases();
    if (entries.length === 0) return;
    const releasing = this.options.locks.releaseMany(entries.map((entry) => entry.handle!)).then(
      () => this.finishReleases(entries),
      (error: unknown) => {
        if (isRedisUnavailable(error)) this.options.redisGate.fault(error);
        else
          this.options.logger.warn(
            { err: { message: describeRedisError(error) }, users: entries.length },
            'could not release user locks; they expire by their TTL',
          );
        this.finishReleases(entries);
      },
    );
    this.releasesInFlight.add(releasing);
    void releasing.finally(() => this.releasesInFlight.delete(releasing));
  }

  private finishReleases(entries: readonly Entry[]): void {
    for (const entry of entries) entry.done(entry.outcome ?? INTERRUPTED);
  }

  /** Gives back the locks waiting for release and waits for releases on their way (the worker is stopping). */
  async close(): Promise<void> {
    this.flushReleases();
    await Promise.allSettled([...this.releasesInFlight]);
  }
}
