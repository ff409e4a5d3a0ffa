import type pg from 'pg';
import type { DatabaseErrorKind } from '../db/pg-errors.js';
import { classifyDatabaseError } from '../db/pg-errors.js';
import { retryConflicts, withJitter } from '../db/retry.js';
import { abortableSleep } from '../lock/abortable-sleep.js';
import type { Logger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { ServiceGate } from './service-gate.js';
import type { JudgedRow, SettlementRow } from './settlement-sql.js';
import { JUDGE_CHUNK_USERS_SQL, JUDGE_REPLAYS_SQL, SETTLE_CHUNK_USERS_SQL, SETTLE_REPLAYS_SQL } from './settlement-sql.js';
import type { ConflictingReward, UserFailure, UserOutcome, UserTask } from './user-task.js';
import { INTERRUPTED } from './user-task.js';

/** Waits before running a group again after a deadlock or serialization failure, ms (jittered). */
const CLASH_RETRY_DELAYS_MS = [50, 200, 800];

/** Cancels backend `$1`'s statement if it is waiting for a lock held by another transaction. */
const CANCEL_IF_WAITING_SQL = `select pg_cancel_backend(pid) from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`;

/** A group statement the worker cancelled because it waited too long for a row held by another transaction. */
class LockWaitCancelled extends Error {
  override readonly name = 'LockWaitCancelled';
}

/** Options of {@link GroupSettlement}. */
export interface GroupSettlementOptions {
  /** Connections the settlement statements run on (one statement at a time each). */
  readonly pool: pg.Pool;
  /** Another pool, to look at (and cancel) a statement that waits for a row held by another transaction. */
  readonly control: Pick<pg.Pool, 'query'>;
  /** Paused while PostgreSQL cannot work; statements wait for it. */
  readonly gate: ServiceGate;
  /** Aborted when the worker stops: a group not yet run is interrupted. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly metrics?: WindfallMetrics | undefined;
  /**
   * A group statement still waiting for a row held by another transaction after this long (checked again as long as
   * it runs) is cancelled, and its users are settled one per statement, each waiting as long as its rows are held.
   */
  readonly lockWaitMs: number;
}

function failed(reason: UserFailure['reason'], transient: boolean, message: string): UserOutcome {
  return { kind: 'failed', failure: { reason, transient, message } };
}

/** The failure of a user whose statement, run for that user alone, failed with `error`. */
function userFailure(task: UserTask, error: unknown, kind: DatabaseErrorKind): UserOutcome {
  const code = (error as { code?: unknown }).code;
  const detail = `${error instanceof Error ? error.message : String(error)}${typeof code === 'string' ? ` (SQLSTATE ${code})` : ''}`;
  const who = `the rewards of user ${JSON.stringify(task.uid)}`;
  switch (kind) {
    case 'invalid':
      return failed('INVALID', false, `${who} cannot be applied: ${detail}; the balance would leave the range of a bigint, or a value is out of range`);
    case 'insufficient_funds':
      return failed('INSUFFICIENT_FUNDS', false, `${who} cannot be applied: the wallet's balance check refused them (${detail})`);
    case 'lock_timeout':
    case 'retry':
      return failed('DB_ERROR', true, `${who} were not applied: ${detail}`);
    default:
      return failed('DB_ERROR', false, `${who} cannot be applied: ${detail}`);
  }
}

/**
 * Settles groups of locked users: one statement (one transaction) per group, each user's rewards all inside it.
 *
 * - PostgreSQL unavailable (a terminated backend, a failover, too many connections): the {@link ServiceGate} pauses
 *   and the group runs again once PostgreSQL works, however long that takes (the statement is idempotent).
 * - A deadlock or serialization failure: the group runs again (three times, jittered), then one user per statement.
 * - A group statement that waits longer than `lockWaitMs` (5 s) for a row held by another transaction (a withdrawal,
 *   a manual fix) is cancelled, and its users are settled one per statement, each waiting for its rows as long as they
 *   are held (as a transaction per user would): only the user whose wallet is held waits.
 * - Any other error (an overflowing balance, a check violation): the group is split in halves until the failing user
 *   is alone; only that user fails, with its reason.
 */
export class GroupSettlement {
  constructor(private readonly options: GroupSettlementOptions) {}

  /** Settles `tasks` (all of one source kind, distinct uids): an outcome per task, in order. Never throws. */
  async settle(tasks: readonly UserTask[]): Promise<UserOutcome[]> {
    try {
      return await this.settleGroup(tasks);
    } catch (error) {
      // not expected: every error is sorted below; never leave a job waiting for ever
      this.options.logger.error({ err: error, users: tasks.length }, 'internal error while settling a group of users');
      const message = `internal error while settling: ${error instanceof Error ? error.message : String(error)}`;
      return tasks.map(() => failed('UNKNOWN', true, message));
    }
  }

  /**
   * @param waitForLocks wait for rows held by other transactions as long as they are held (no cancel).
   * @param throwIfHeld a single user's statement cancelled for waiting too long throws {@link LockWaitCancelled}.
   */
  private async settleGroup(tasks: readonly UserTask[], waitForLocks = false, throwIfHeld = false): Promise<UserOutcome[]> {
    let clashes = 0;
    for (;;) {
      if (this.options.signal.aborted) return tasks.map(() => INTERRUPTED);
      try {
        await this.options.gate.whenOpen(this.options.signal);
      } catch {
        return tasks.map(() => INTERRUPTED);
      }
      let rows: SettlementRow[];
      try {
        rows = await this.runStatement(tasks, waitForLocks);
      } catch (error) {
        if (error instanceof LockWaitCancelled && throwIfHeld) throw error;
        const kind = error instanceof LockWaitCancelled ? 'lock_timeout' : classifyDatabaseError(error);
        if (kind === 'unavailable') {
          this.options.gate.fault(error);
          continue;
        }
        if (kind === 'retry' && clashes < CLASH_RETRY_DELAYS_MS.length) {
          this.options.logger.debug({ err: error, users: tasks.length, retry: clashes + 1 }, 'settlement statement clashed with concurrent work; running it again');
          await abortableSleep(withJitter(CLASH_RETRY_DELAYS_MS[clashes]!), this.options.signal).catch(() => undefined);
          clashes += 1;
          continue;
        }
        if (kind === 'lock_timeout' && !waitForLocks) {
          if (tasks.length === 1) return this.settleGroup(tasks, true);
          // a row held by another transaction: one user per statement (each again within the wait limit), then the
          // users whose rows are still held, each waiting as long as needed
          this.options.logger.debug({ users: tasks.length }, 'a wallet row is held by another transaction; settling these users one by one');
          return this.settleOneByOne(tasks);
        }
        if (tasks.length === 1) return [userFailure(tasks[0]!, error, kind)];
        if (kind === 'retry') {
          // clashing again and again: one user per statement, so that only the users involved wait
          const outcomes: UserOutcome[] = [];
          for (const task of tasks) outcomes.push(...(await this.settleGroup([task], waitForLocks)));
          return outcomes;
        }
        // a user whose rewards cannot be applied: halve the group until that user is alone
        const middle = Math.ceil(tasks.length / 2);
        this.options.logger.debug({ err: error, users: tasks.length }, 'settlement statement failed; splitting the group to find the user it fails for');
        return [...(await this.settleGroup(tasks.slice(0, middle), waitForLocks)), ...(await this.settleGroup(tasks.slice(middle), waitForLocks))];
      }
      return this.outcomes(tasks, rows);
    }
  }

  /** Settles users one per statement; those still waiting for a held row after the limit go last, without a limit. */
  private async settleOneByOne(tasks: readonly UserTask[]): Promise<UserOutcome[]> {
    const outcomes: UserOutcome[] = new Array<UserOutcome>(tasks.length);
    const held: number[] = [];
    for (let i = 0; i < tasks.length; i += 1) {
      const task = tasks[i]!;
      try {
        outcomes[i] = (await this.settleGroup([task], false, true))[0]!;
      } catch (error) {
        if (!(error instanceof LockWaitCancelled)) throw error;
        held.push(i);
      }
    }
    for (const i of held) outcomes[i] = (await this.settleGroup([tasks[i]!], true))[0]!;
    return outcomes;
  }

  /**
   * Runs the group's statement. Unless `waitForLocks`, a statement found waiting for a row held by another transaction
   * after `lockWaitMs` (checked again each `lockWaitMs`) is cancelled: {@link LockWaitCancelled}.
   */
  private async runStatement(tasks: readonly UserTask[], waitForLocks: boolean): Promise<SettlementRow[]> {
    const query = this.statementOf(tasks);
    const started = performance.now();
    const client = await this.options.pool.connect();
    let cancelRequested = false;
    let cancelling: Promise<unknown> | undefined;
    const watch = waitForLocks
      ? undefined
      : setInterval(() => {
          if (cancelling) return;
          const pid = (client as unknown as { processID: number | null }).processID;
          cancelRequested = true;
          cancelling = this.options.control.query(CANCEL_IF_WAITING_SQL, [pid]).then(
            (result) => {
              if (result.rowCount === 0) cancelRequested = false;
              cancelling = undefined;
            },
            () => {
              cancelRequested = false;
              cancelling = undefined;
            },
          );
        }, this.options.lockWaitMs);
    let broken: Error | undefined;
    try {
      const { rows } = await client.query<SettlementRow>(query);
      return rows;
    } catch (error) {
      if (cancelRequested && (error as { code?: unknown }).code === '57014') {
        throw new LockWaitCancelled(`waited more than ${this.options.lockWaitMs} ms for a row held by another transaction`, { cause: error });
      }
      if (classifyDatabaseError(error) === 'unavailable') broken = error as Error;
      throw error;
    } finally {
      clearInterval(watch);
      // the connection goes back to the pool only once no cancel can reach a later statement on it
      await cancelling;
      client.release(broken);
      this.options.metrics?.userTransaction.observe((performance.now() - started) / 1000);
      this.options.metrics?.usersPerTransaction.observe(tasks.length);
    }
  }

  /** The settling (or, with `judge`, the judging) statement of `tasks`. */
  private statementOf(tasks: readonly UserTask[], judge = false): pg.QueryConfig {
    const first = tasks[0]!.source;
    if (first.kind === 'chunk') {
      const batchIds: string[] = [];
      const shards: number[] = [];
      const uids: string[] = [];
      const excludedBatches: string[] = [];
      const excludedRewards: string[] = [];
      for (const task of tasks) {
        const source = task.source;
        if (source.kind !== 'chunk') throw new Error('internal: a settlement group mixes chunk users and replays');
        batchIds.push(source.batchId);
        shards.push(source.shard);
        uids.push(task.uid);
        for (const rewardId of source.excluded) {
          excludedBatches.push(source.batchId);
          excludedRewards.push(rewardId);
        }
      }
      const values = [batchIds, shards, uids, excludedBatches, excludedRewards];
      return judge
        ? { name: 'windfall_judge_chunk_users', text: JUDGE_CHUNK_USERS_SQL, values }
        : { name: 'windfall_settle_chunk_users', text: SETTLE_CHUNK_USERS_SQL, values };
    }
    const ids = tasks.map((task) => {
      if (task.source.kind !== 'replay') throw new Error('internal: a settlement group mixes chunk users and replays');
      return task.source.deadLetterId;
    });
    return judge
      ? { name: 'windfall_judge_replays', text: JUDGE_REPLAYS_SQL, values: [ids] }
      : { name: 'windfall_settle_replays', text: SETTLE_REPLAYS_SQL, values: [ids] };
  }

  /**
   * Turns the statement's rows into an outcome per task. A user whose rewards were not all inserted now is judged
   * against the ledger (one more statement for all such users of the group).
   */
  private async outcomes(tasks: readonly UserTask[], rows: readonly SettlementRow[]): Promise<UserOutcome[]> {
    const byUid = new Map(rows.map((row) => [row.uid, row]));
    const toJudge = tasks.filter((task) => {
      const row = byUid.get(task.uid);
      return row !== undefined && row.inserted < row.read;
    });
    let judged = new Map<string, Judgement>();
    let notJudged: UserOutcome | undefined;
    if (toJudge.length > 0) {
      try {
        judged = await this.judge(toJudge);
      } catch (error) {
        // their statement committed: what is left is to judge and record duplicates, which a later run does
        notJudged = this.options.signal.aborted
          ? INTERRUPTED
          : failed('UNKNOWN', true, `could not read back rewards skipped by the settlement: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    return tasks.map((task): UserOutcome => {
      const row = byUid.get(task.uid) ?? { uid: task.uid, read: 0, inserted: 0 };
      if (notJudged && row.inserted < row.read) return notJudged;
      if (row.read !== task.rewards) {
        this.options.logger.warn(
          { uid: task.uid, batchId: task.source.batchId, expected: task.rewards, read: row.read },
          'internal: the settlement statement read a different number of rewards than the job loaded for this user',
        );
      }
      if (row.inserted === row.read) return { kind: 'settled', applied: row.inserted, alreadyApplied: 0, duplicates: 0, conflicts: [] };
      const judgement = judged.get(task.uid) ?? { applied: 0, duplicates: 0, conflicts: [] };
      if (judgement.applied + judgement.duplicates + judgement.conflicts.length !== row.read || judgement.applied < row.inserted) {
        return failed(
          'UNKNOWN',
          true,
          `${row.read - row.inserted} reward(s) of user ${JSON.stringify(task.uid)} were neither inserted nor found in the ledger as expected; the job will try again`,
        );
      }
      return {
        kind: 'settled',
        applied: row.inserted,
        alreadyApplied: judgement.applied - row.inserted,
        duplicates: judgement.duplicates,
        conflicts: judgement.conflicts,
      };
    });
  }

  /**
   * Judges the rewards of `tasks` against the ledger (a fresh snapshot, after their statement committed) and records
   * their duplicates; waits out PostgreSQL outages and runs again after clashes.
   */
  private async judge(tasks: readonly UserTask[]): Promise<Map<string, Judgement>> {
    const query = this.statementOf(tasks, true);
    const { rows } = await this.options.gate.run(
      () => retryConflicts(() => this.options.pool.query<JudgedRow>(query), { signal: this.options.signal }),
      this.options.signal,
    );
    const judged = new Map<string, Judgement>();
    for (const row of rows) {
      let judgement = judged.get(row.uid);
      if (!judgement) {
        judgement = { applied: 0, duplicates: 0, conflicts: [] };
        judged.set(row.uid, judgement);
      }
      if (row.outcome === 'applied') judgement.applied += row.n;
      else if (row.outcome === 'duplicate') judgement.duplicates += row.n;
      else {
        judgement.conflicts.push({
          rewardId: row.reward_id!,
          amount: BigInt(row.amount!),
          existing: { uid: row.l_uid!, amount: BigInt(row.l_amount!), batchId: row.l_batch },
        });
      }
    }
    return judged;
  }
}

/** What the ledger says of a user's rewards: applied for this batch, duplicates, conflicts. */
interface Judgement {
  applied: number;
  duplicates: number;
  readonly conflicts: ConflictingReward[];
}
