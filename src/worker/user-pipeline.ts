import pg from 'pg';
import type { Semaphore } from '../concurrency/semaphore.js';
import { LockTimeoutError } from '../lock/lock-errors.js';
import type { LockPolicy } from '../lock/lock-policy.js';
import type { BusyLock, LockHandle, UserLocks } from '../lock/user-locks.js';
import type { UserApplyResult } from '../wallet/apply-user-operations.js';
import type { LedgerOperation } from '../wallet/ledger-operation.js';
import type { SettleContext } from '../wallet/settle-user.js';
import { applyUserStatement } from '../wallet/settle-user.js';
import { StatementLanes } from './statement-lanes.js';

/** Longest a finished user's lock waits to be released with others (or with the next locks taken), ms. */
const RELEASE_DELAY_MS = 5;
/**
 * Users waiting in line beyond which a job waits before loading its rewards (jobs load one at a time, about half a
 * second of work ahead), so the worker's memory does not grow with jobs in flight × chunk size.
 */
const ADMIT_BELOW = 1000;
/** Statements sent ahead on each connection: the one running and the next user's, queued behind it. */
export const LANE_DEPTH = 2;

/** One user's work handed to the pipeline. */
export interface UserTask {
  readonly context: SettleContext;
  readonly uid: string;
  readonly operations: readonly LedgerOperation[];
  readonly batchId: string;
  readonly policy: LockPolicy;
  readonly signal: AbortSignal;
}

interface Entry {
  readonly task: UserTask;
  handle?: LockHandle;
  result?: UserApplyResult;
  error?: unknown;
  settle(): void;
}

/**
 * The users of every job of a worker process, one pipeline per process (per {@link Semaphore}):
 *
 *  1. locks are taken ahead of the statements, many users per Redis round trip (one script doing `SET NX PX` per
 *     key), just enough ahead to keep the statement slots busy — a lock is held only while its user is about to run;
 *  2. at most `permits` user transactions run at once (the process-wide bound, WINDFALL_CONCURRENCY): one per
 *     connection of the process's {@link StatementLanes}, each user its own transaction; behind each running
 *     statement the next user's waits in its connection, so PostgreSQL never waits for this process in between;
 *  3. finished users' locks are released together, many per round trip (one token-checked script), in the same
 *     round trip as the next locks taken, at most {@link RELEASE_DELAY_MS} after their statement.
 *
 * A lock found busy leaves the line and waits under its policy (without taking a statement slot), then runs next.
 * Same lock key, value, TTL, policy and token-checked release as {@link UserLocks.acquire}/{@link UserLocks.release}:
 * only the number of round trips changes.
 */
export class UserPipeline {
  private readonly queue: Entry[] = [];
  private queueHead = 0;
  private readonly ready: Entry[] = [];
  /** Users in a lock round trip now. */
  private locking = 0;
  /** Statements in flight. */
  private running = 0;
  private releasing: Entry[] = [];
  private releaseTimer: NodeJS.Timeout | undefined;
  /** Statements on their way at once. */
  private readonly slots: number;
  /** Users locked ahead of the statement slots, and the smallest lock round trip worth making. */
  private readonly lookahead: number;
  private readonly lanes = new Map<unknown, StatementLanes>();
  private closed = false;
  /** Jobs waiting for room before they load their rewards, and jobs loading now. */
  private admissions: (() => void)[] = [];
  private loading = 0;

  constructor(private readonly limiter: Semaphore) {
    this.slots = limiter.permits * LANE_DEPTH;
    this.lookahead = Math.max(8, 2 * limiter.permits);
  }

  /** The lanes of a pool (null for anything else, which then runs one statement per permit). */
  private lanesOf(db: unknown): StatementLanes | null {
    if (!(db instanceof pg.Pool)) return null;
    let lanes = this.lanes.get(db);
    if (!lanes) {
      lanes = StatementLanes.forPool(db, { lanes: this.limiter.permits, depth: LANE_DEPTH });
      this.lanes.set(db, lanes);
    }
    return lanes;
  }

  /**
   * Admits a job to load its rewards once fewer than {@link ADMIT_BELOW} users wait in line and no other job is
   * loading (at once when so), or when `signal` aborts. Resolves with the function to call once the job's users are
   * in line (or its load failed): the next job may load then.
   */
  admission(signal: AbortSignal): Promise<() => void> {
    return new Promise<() => void>((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        this.loading -= 1;
        this.admit();
      };
      const enter = (): void => {
        signal.removeEventListener('abort', enter);
        this.admissions = this.admissions.filter((waiting) => waiting !== enter);
        this.loading += 1;
        resolve(finish);
      };
      if (signal.aborted || this.hasRoom()) {
        enter();
        return;
      }
      signal.addEventListener('abort', enter, { once: true });
      this.admissions.push(enter);
    });
  }

  private hasRoom(): boolean {
    return this.loading === 0 && this.queued < ADMIT_BELOW;
  }

  private admit(): void {
    if (this.admissions.length > 0 && this.hasRoom()) this.admissions[0]!();
  }

  /** Settles one user: resolves with the statement's result once the user's lock is released, or rejects. */
  run(task: UserTask): Promise<UserApplyResult> {
    return new Promise<UserApplyResult>((resolve, reject) => {
      const entry: Entry = {
        task,
        settle() {
          if (entry.error !== undefined) reject(entry.error);
          else resolve(entry.result!);
        },
      };
      this.queue.push(entry);
      this.pump();
    });
  }

  private get queued(): number {
    return this.queue.length - this.queueHead;
  }

  private pump(): void {
    while (this.ready.length > 0 && this.running < this.slotsFor(this.ready[0]!)) this.start(this.ready.shift()!);
    const locked = this.ready.length + this.locking;
    const wanted = this.slots + this.lookahead - this.running - locked;
    const queued = this.queued;
    if (queued > 0 && wanted > 0 && (wanted >= Math.min(this.lookahead, queued) || locked === 0)) {
      this.lockAhead(Math.min(wanted, queued));
    }
  }

  /** Takes the next `count` users' locks in one round trip (users of one lock manager and policy at a time). */
  private lockAhead(count: number): void {
    const first = this.queue[this.queueHead]!;
    const batch: Entry[] = [];
    while (batch.length < count && this.queued > 0) {
      const next = this.queue[this.queueHead]!;
      if (next.task.context.locks !== first.task.context.locks || next.task.policy !== first.task.policy || next.task.signal !== first.task.signal) break;
      batch.push(next);
      this.queueHead += 1;
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    if (this.admissions.length > 0) this.admit();
    const { locks } = first.task.context;
    const { policy, signal } = first.task;
    // the finished users' locks waiting for release go in the same round trip — unless the worker is stopping:
    // then the acquisition fails at once, and the releases go on their own so that their outcome is their own
    if (signal.aborted && this.releasing.length > 0) this.flushReleases();
    const releasing = this.takeReleases(locks);
    this.locking += batch.length;
    locks
      .exchange(
        releasing.map((entry) => entry.handle!),
        batch.map((entry) => entry.task.uid),
        policy,
        { signal },
      )
      .then(
        ({ acquired }) => {
          for (const entry of releasing) entry.settle();
          this.locking -= batch.length;
          acquired.forEach((outcome, i) => {
            const entry = batch[i]!;
            if ('busy' in outcome) this.waitForLock(locks, entry, outcome);
            else {
              entry.handle = outcome;
              this.ready.push(entry);
            }
          });
          this.pump();
        },
        (error: unknown) => {
          this.releaseFailed(releasing, error);
          this.locking -= batch.length;
          for (const entry of batch) {
            entry.error = error instanceof LockTimeoutError ? new LockTimeoutError(entry.task.uid, policy.name, 0, { cause: error.cause }) : error;
            entry.settle();
          }
          this.pump();
        },
      );
  }

  /** Takes the finished users waiting for release whose locks `locks` manages. */
  private takeReleases(locks: UserLocks): Entry[] {
    const mine: Entry[] = [];
    const others: Entry[] = [];
    for (const entry of this.releasing) (entry.task.context.locks === locks ? mine : others).push(entry);
    this.releasing = others;
    if (others.length === 0) {
      clearTimeout(this.releaseTimer);
      this.releaseTimer = undefined;
    }
    return mine;
  }

  private releaseFailed(entries: readonly Entry[], error: unknown): void {
    for (const entry of entries) {
      entry.task.context.logger.warn({ err: error, uid: entry.task.uid }, 'could not release the user lock; it will expire by its TTL');
      entry.settle();
    }
  }

  /** A busy lock: wait for it under the policy, off the line; once taken, the user runs next. */
  private waitForLock(locks: UserLocks, entry: Entry, busy: BusyLock): void {
    locks.continueAcquire(busy, { signal: entry.task.signal }).then(
      (handle) => {
        entry.handle = handle;
        this.ready.unshift(entry);
        this.pump();
      },
      (error: unknown) => {
        entry.error = error;
        entry.settle();
        this.pump();
      },
    );
  }

  private slotsFor(entry: Entry): number {
    return this.lanesOf(entry.task.context.db) ? this.slots : this.limiter.permits;
  }

  private start(entry: Entry): void {
    const { task } = entry;
    if (task.signal.aborted) {
      // stopping: a user not started yet is put back (its lock given back), not failed
      entry.error = new LockTimeoutError(task.uid, task.policy.name, 0, { cause: task.signal.reason });
      this.release(entry);
      return;
    }
    this.running += 1;
    const lanes = this.lanesOf(task.context.db);
    applyUserStatement(task.context, task.uid, task.operations, { batchId: task.batchId, signal: task.signal, runner: lanes?.run })
      .then(
        (result) => {
          entry.result = result;
        },
        (error: unknown) => {
          entry.error = error;
        },
      )
      .finally(() => {
        this.running -= 1;
        this.release(entry);
        this.pump();
      });
  }

  /**
   * Queues a finished user's lock for release. Releases go out with the next lock round trip, or on their own once
   * {@link RELEASE_DELAY_MS} has passed or enough of them wait.
   */
  private release(entry: Entry): void {
    this.releasing.push(entry);
    if (this.releasing.length >= 2 * this.lookahead) this.flushReleases();
    else this.releaseTimer ??= setTimeout(() => this.flushReleases(), RELEASE_DELAY_MS);
  }

  private flushReleases(): void {
    clearTimeout(this.releaseTimer);
    this.releaseTimer = undefined;
    const entries = this.releasing;
    this.releasing = [];
    const byLocks = new Map<UserLocks, Entry[]>();
    for (const entry of entries) {
      const list = byLocks.get(entry.task.context.locks) ?? [];
      list.push(entry);
      byLocks.set(entry.task.context.locks, list);
    }
    for (const [locks, list] of byLocks) {
      locks.releaseMany(list.map((entry) => entry.handle!)).then(
        () => {
          for (const entry of list) entry.settle();
        },
        (error: unknown) => this.releaseFailed(list, error),
      );
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Waits for statements on their way and closes the lanes' connections (the worker is stopping). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.releasing.length > 0) this.flushReleases();
    await Promise.all([...this.lanes.values()].map((lanes) => lanes.close()));
    this.lanes.clear();
  }
}

const pipelines = new WeakMap<Semaphore, UserPipeline>();

/** The pipeline of the process-wide bound `limiter` (created on first use). */
export function pipelineOf(limiter: Semaphore): UserPipeline {
  let pipeline = pipelines.get(limiter);
  if (!pipeline || pipeline.isClosed) {
    pipeline = new UserPipeline(limiter);
    pipelines.set(limiter, pipeline);
  }
  return pipeline;
}

/** Closes the pipeline of `limiter`, if it has one (see {@link UserPipeline.close}). */
export async function closePipeline(limiter: Semaphore): Promise<void> {
  const pipeline = pipelines.get(limiter);
  pipelines.delete(limiter);
  await pipeline?.close();
}
