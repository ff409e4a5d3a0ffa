import type pg from 'pg';
import type { DatabaseErrorKind } from '../db/pg-errors.js';
import { classifyDatabaseError } from '../db/pg-errors.js';
import { withJitter } from '../db/retry.js';
import { abortableSleep } from '../lock/abortable-sleep.js';
import type { Logger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { ExistingEntry } from '../wallet/ledger-operation.js';
import type { ServiceGate } from './service-gate.js';
import type { SettlementRow } from './settlement-sql.js';
import { FIND_LEDGER_ENTRIES_SQL, RECORD_DUPLICATES_SQL, SETTLE_CHUNK_USERS_SQL, SETTLE_REPLAYS_SQL } from './settlement-sql.js';
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

  private statementOf(tasks: readonly UserTask[]): pg.QueryConfig {
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
      return { name: 'windfall_settle_chunk_users', text: SETTLE_CHUNK_USERS_SQL, values: [batchIds, shards, uids, excludedBatches, excludedRewards] };
    }
    const ids = tasks.map((task) => {
      if (task.source.kind !== 'replay') throw new Error('internal: a settlement group mixes chunk users and replays');
      return task.source.deadLetterId;
    });
    return { name: 'windfall_settle_replays', text: SETTLE_REPLAYS_SQL, values: [ids] };
  }

  /** Turns the statement's rows into an outcome per task, looking up again the rewards it could not judge. */
  private async outcomes(tasks: readonly UserTask[], rows: readonly SettlementRow[]): Promise<UserOutcome[]> {
    const byUid = new Map<string, { applied: number; already: number; duplicates: number; conflicts: ConflictingReward[]; unknown: SettlementRow[] }>();
    const of = (uid: string) => {
      let counts = byUid.get(uid);
      if (!counts) {
        counts = { applied: 0, already: 0, duplicates: 0, conflicts: [], unknown: [] };
        byUid.set(uid, counts);
      }
      return counts;
    };
    for (const row of rows) {
      const counts = of(row.uid);
      if (row.outcome === 'applied') counts.applied += row.n;
      else if (row.outcome === 'already') counts.already += row.n;
      else if (row.outcome === 'duplicate') counts.duplicates += row.n;
      else if (row.outcome === 'conflict') {
        counts.conflicts.push({
          rewardId: row.reward_id!,
          amount: BigInt(row.amount!),
          existing: { uid: row.l_uid!, amount: BigInt(row.l_amount!), batchId: row.l_batch },
        });
      } else counts.unknown.push(row);
    }

    const outcomes: UserOutcome[] = [];
    for (const task of tasks) {
      const counts = byUid.get(task.uid) ?? { applied: 0, already: 0, duplicates: 0, conflicts: [], unknown: [] };
      if (counts.unknown.length > 0) {
        const unresolved = await this.judgeAgain(task, counts.unknown, counts);
        if (unresolved) {
          outcomes.push(unresolved);
          continue;
        }
      }
      const settled = counts.applied + counts.already + counts.duplicates + counts.conflicts.length;
      if (settled !== task.rewards) {
        this.options.logger.warn(
          { uid: task.uid, batchId: task.source.batchId, expected: task.rewards, settled },
          'internal: the settlement statement settled a different number of rewards than the job loaded for this user',
        );
      }
      outcomes.push({ kind: 'settled', applied: counts.applied, alreadyApplied: counts.already, duplicates: counts.duplicates, conflicts: counts.conflicts });
    }
    return outcomes;
  }

  /**
   * Rewards the statement skipped because a transaction that committed while it ran wrote their ids (its snapshot
   * could not see them): read the ledger again and judge them. Returns a failure when one is still not found.
   */
  private async judgeAgain(
    task: UserTask,
    unknown: readonly SettlementRow[],
    counts: { already: number; duplicates: number; conflicts: ConflictingReward[] },
  ): Promise<UserOutcome | null> {
    const ids = unknown.map((row) => row.reward_id!);
    const found = await this.options.gate.run(
      () => this.options.pool.query<{ operation_id: string; uid: string; amount: string; batch_id: string | null }>(FIND_LEDGER_ENTRIES_SQL, [ids]),
      this.options.signal,
    );
    const entries = new Map<string, ExistingEntry>(found.rows.map((row) => [row.operation_id, { uid: row.uid, amount: BigInt(row.amount), batchId: row.batch_id }]));
    const duplicates: string[] = [];
    for (const row of unknown) {
      const existing = entries.get(row.reward_id!);
      if (!existing) {
        return failed('UNKNOWN', true, `reward ${JSON.stringify(row.reward_id)} of user ${JSON.stringify(task.uid)} was neither inserted nor found in the ledger; the job will try again`);
      }
      const amount = BigInt(row.amount!);
      if (existing.uid !== task.uid || existing.amount !== amount) counts.conflicts.push({ rewardId: row.reward_id!, amount, existing });
      else if (existing.batchId === task.source.batchId) counts.already += 1;
      else {
        counts.duplicates += 1;
        duplicates.push(row.reward_id!);
      }
    }
    if (duplicates.length > 0) {
      await this.options.gate.run(
        () => this.options.pool.query(RECORD_DUPLICATES_SQL, [duplicates.map(() => task.source.batchId), duplicates]),
        this.options.signal,
      );
    }
    return null;
  }
}
