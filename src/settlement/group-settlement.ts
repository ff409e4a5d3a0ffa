import type pg from 'pg';
import { DEFAULT_CONFIG } from '../config/config.js';
import { cancelQuery } from '../db/cancel-query.js';
import { withDeadline } from '../db/silent-connections.js';
import type { DatabaseErrorKind } from '../db/pg-errors.js';
import { classifyDatabaseError, isLockTimeout, isStatementResourceError, isUniqueViolation } from '../db/pg-errors.js';
import { waitAfterClash } from '../db/retry.js';
import type { Logger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { ServiceGate } from '../services/service-gate.js';
import { databaseStep } from '../services/service-gate.js';
import type { JudgedRow, SettlementRow } from './settlement-sql.js';
import {
  JUDGE_CHUNK_USERS_SQL,
  JUDGE_REPLAYS_SQL,
  SETTLE_CHUNK_USERS_SQL,
  SETTLE_REPLAYS_SQL,
} from './settlement-sql.js';
import type { ConflictingReward, UserOutcome, UserTask } from './user-task.js';
import { failedOutcome, FENCED, INTERRUPTED } from './user-task.js';

/**
 * Times a group is run again, at once, after a rewardId it inserts was committed meanwhile by another transaction
 * (see settlement-sql.ts); the next run's snapshot sees that row and skips it, so one is nearly always enough.
 */
const LEDGER_RACE_RERUNS = 5;

/** The ledger insert met a rewardId that a concurrent transaction committed after the statement's snapshot. */
function isLedgerRace(error: unknown): boolean {
  return isUniqueViolation(error, 'ledger_entries_operation_id_key');
}
/**
 * Times a group may fail with a statement-sized resource error (disk full, out of memory, a configuration limit such
 * as temp_file_limit: `isStatementResourceError`) while PostgreSQL otherwise works, before it counts as the group's
 * own failure.
 */
const RESOURCE_FAULTS_PER_GROUP = 3;

/**
 * How long a session may sit idle inside a settlement statement's transaction (its client stopped between the
 * statement and its Sync) before the server ends it and lets go of its locks, ms.
 */
const IDLE_IN_STATEMENT_MS = 30_000;

/** Time a statement may take per reward it settles, on top of its deadline (a 100,000-reward user: 20 s more), ms. */
const DEADLINE_MS_PER_REWARD = 0.2;

/** A statement the server ended (`lock_timeout`, SQLSTATE 55P03) because it waited too long for a row held by another transaction. */
class LockWaitCancelled extends Error {
  override readonly name = 'LockWaitCancelled';
}

/** The settlement connections could not be opened: PostgreSQL is unavailable, whatever the error says. */
class ConnectFailed extends Error {
  override readonly name = 'ConnectFailed';
}

/** Options of {@link GroupSettlement}. */
export interface GroupSettlementOptions {
  /** Connections the settlement statements run on (one statement at a time each). */
  readonly pool: pg.Pool;
  /** Paused while PostgreSQL cannot work; statements wait for it. */
  readonly gate: ServiceGate;
  /** Aborted when the worker stops: a group not yet run is interrupted, a statement waiting for a row is cancelled. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly metrics?: WindfallMetrics | undefined;
  /**
   * A group statement waiting this long for a row held by another transaction is ended by the server (its
   * `lock_timeout`, so even when this process froze), and its users are settled one per statement.
   */
  readonly lockWaitMs: number;
  /**
   * How long a user settled alone may wait for its held wallet row before it is given back to its job as a transient
   * failure (retried by the job's attempts), so that no job waits for ever on another system's transaction. Waited in
   * statements of `lockWaitMs` each, so that every statement stays within its deadline.
   */
  readonly heldRowWaitMs: number;
  /**
   * A statement without an answer this long past its lock-wait limit (and an allowance for its size) counts its
   * connection as silent: it fails as PostgreSQL being unavailable, and runs again on a new connection. Default 20000.
   */
  readonly silenceMs?: number;
}

/** Receives a user's outcome as soon as it is known (the users of one group may end at different times). */
export type DeliverOutcome = (task: UserTask, outcome: UserOutcome) => void;

function describeError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return `${error instanceof Error ? error.message : String(error)}${typeof code === 'string' ? ` (SQLSTATE ${code})` : ''}`;
}

/** The failure of a user whose statement, run for that user alone, failed with a data error or a clash. */
function userFailure(task: UserTask, error: unknown, kind: DatabaseErrorKind): UserOutcome {
  const detail = describeError(error);
  const who = `the rewards of user ${JSON.stringify(task.uid)}`;
  switch (kind) {
    case 'invalid':
      return failedOutcome(
        'INVALID',
        false,
        `${who} cannot be applied: ${detail}; the balance would leave the range of a bigint, or a value is out of range`,
      );
    case 'insufficient_funds':
      return failedOutcome(
        'INSUFFICIENT_FUNDS',
        false,
        `${who} cannot be applied: the wallet's balance check refused them (${detail})`,
      );
    default:
      return failedOutcome('DB_ERROR', true, `${who} were not applied: ${detail}`);
  }
}

/**
 * Settles groups of locked users: one statement (one transaction) per group, each user's rewards all inside it.
 *
 * - PostgreSQL unavailable (a terminated backend, a failover, too many connections, credentials refused): the
 *   {@link ServiceGate} pauses and the group runs again once PostgreSQL works, however long that takes.
 * - A deadlock or serialization failure: the group runs again (three times, jittered), then one user per statement.
 * - A group statement that waits more than `lockWaitMs` (5 s) for a row held by another transaction (a withdrawal,
 *   a manual fix) is cancelled, and its users are settled one per statement; the users whose rows are still held go
 *   last, each waiting up to `heldRowWaitMs` (then its job retries it): only they wait, and their outcomes alone.
 * - Any other error of the statement (an overflowing balance, a check violation, a trigger's exception, a missing
 *   table): the group is split in halves until the failing user is alone; only that user fails — at once for a data
 *   error (its rewards can never be applied), for now otherwise (its job retries it; logged as an error). A
 *   statement-sized resource error (disk, memory, temp_file_limit) that persists while PostgreSQL works is split too.
 *
 * Each user's outcome is delivered as soon as it is known.
 */
export class GroupSettlement {
  constructor(private readonly options: GroupSettlementOptions) {}

  /** Settles `tasks` (all of one source kind, distinct uids), delivering each outcome once. Never throws. */
  async settle(tasks: readonly UserTask[], deliver: DeliverOutcome): Promise<void> {
    const pending = new Set(tasks);
    const once: DeliverOutcome = (task, outcome) => {
      if (pending.delete(task)) deliver(task, outcome);
    };
    try {
      await this.settleGroup(tasks, once, 'limit');
    } catch (error) {
      // not expected: every error is sorted below; never leave a job waiting for ever
      this.options.logger.error({ err: error, users: tasks.length }, 'internal error while settling a group of users');
      const message = `internal error while settling: ${error instanceof Error ? error.message : String(error)}`;
      for (const task of [...pending]) once(task, failedOutcome('UNKNOWN', true, message));
    }
  }

  /** {@link settle}, answering the outcomes in the order of `tasks` once all are known. */
  async settleAll(tasks: readonly UserTask[]): Promise<UserOutcome[]> {
    const outcomes = new Map<UserTask, UserOutcome>();
    await this.settle(tasks, (task, outcome) => outcomes.set(task, outcome));
    return tasks.map((task) => outcomes.get(task)!);
  }

  /**
   * @param rowWait `limit`: cancel after `lockWaitMs` of waiting for a held row (a group); `alone`: the same for a user
   *   settled alone, which then throws {@link LockWaitCancelled} to its caller; `held`: wait up to `heldRowWaitMs`.
   */
  private async settleGroup(
    tasks: readonly UserTask[],
    deliver: DeliverOutcome,
    rowWait: 'limit' | 'alone' | 'held',
  ): Promise<void> {
    let clashes = 0;
    let races = 0;
    let resourceFaults = 0;
    const heldSince = performance.now();
    const all = (outcome: UserOutcome): void => {
      for (const task of tasks) deliver(task, outcome);
    };
    for (;;) {
      if (this.options.signal.aborted) return all(INTERRUPTED);
      try {
        await this.options.gate.whenOpen(this.options.signal);
      } catch {
        return all(INTERRUPTED);
      }
      let rows: SettlementRow[];
      try {
        rows = await this.runStatement(tasks, this.options.lockWaitMs);
      } catch (error) {
        if (this.options.signal.aborted) return all(INTERRUPTED);
        if (error instanceof LockWaitCancelled) {
          if (rowWait === 'alone') throw error;
          if (rowWait === 'held') {
            // the row is still held: wait on, statement after statement, up to the limit
            if (performance.now() - heldSince < this.options.heldRowWaitMs) continue;
            const [task] = tasks;
            return deliver(
              task!,
              failedOutcome(
                'DB_ERROR',
                true,
                `the rewards of user ${JSON.stringify(task!.uid)} were not applied: its wallet row stayed locked by another transaction for more than ${this.options.heldRowWaitMs} ms`,
              ),
            );
          }
          this.options.logger.debug(
            { users: tasks.length },
            'a wallet row is held by another transaction; settling these users one by one',
          );
          return this.settleOneByOne(tasks, deliver);
        }
        if (isLedgerRace(error) && races < LEDGER_RACE_RERUNS) {
          this.options.logger.debug(
            { users: tasks.length, rerun: races + 1 },
            'a rewardId of the group was written meanwhile by another transaction; running the group again',
          );
          races += 1;
          continue;
        }
        // a race that kept recurring counts as a clash with concurrent work (never as the user's own bad data)
        const kind =
          error instanceof ConnectFailed ? 'unavailable' : isLedgerRace(error) ? 'retry' : classifyDatabaseError(error);
        if (
          kind === 'unavailable' &&
          !(isStatementResourceError(error) && ++resourceFaults > RESOURCE_FAULTS_PER_GROUP)
        ) {
          this.options.gate.fault(error);
          continue;
        }
        if (kind === 'retry' && (await waitAfterClash(clashes, this.options.signal))) {
          clashes += 1;
          this.options.logger.debug(
            { err: error, users: tasks.length, retry: clashes },
            'settlement statement clashed with concurrent work; running it again',
          );
          continue;
        }
        if (tasks.length === 1) {
          // data errors are the user's own (dead-lettered at once); anything else (a missing table, an internal
          // error, a statement too big for the server's resources) is retried by the job
          if (kind === 'permanent' || kind === 'unavailable') {
            this.options.logger.error(
              { err: error, uid: tasks[0]!.uid },
              'settlement statement failed for a user; its job will retry it',
            );
          }
          return deliver(tasks[0]!, userFailure(tasks[0]!, error, kind));
        }
        if (kind === 'retry' || kind === 'lock_timeout') return this.settleOneByOne(tasks, deliver);
        // a user whose rewards cannot be applied (or a statement too big for the server): halve the group until the
        // failing user is alone
        const middle = Math.ceil(tasks.length / 2);
        this.options.logger.debug(
          { err: error, users: tasks.length },
          'settlement statement failed; splitting the group to find the user it fails for',
        );
        await this.settleGroup(tasks.slice(0, middle), deliver, rowWait);
        return this.settleGroup(tasks.slice(middle), deliver, rowWait);
      }
      return this.deliverOutcomes(tasks, rows, deliver);
    }
  }

  /**
   * Settles users one per statement, each within the wait limit; those whose rows are still held go last, each waiting
   * up to `heldRowWaitMs`. Every other user's outcome is delivered at once.
   */
  private async settleOneByOne(tasks: readonly UserTask[], deliver: DeliverOutcome): Promise<void> {
    const held: UserTask[] = [];
    for (const task of tasks) {
      try {
        await this.settleGroup([task], deliver, 'alone');
      } catch (error) {
        if (!(error instanceof LockWaitCancelled)) throw error;
        held.push(task);
      }
    }
    for (const task of held) await this.settleGroup([task], deliver, 'held');
  }

  /**
   * Runs the group's statement. The server ends it when it waits more than `waitLimitMs` for a row held by another
   * transaction ({@link LockWaitCancelled}); a worker that stops cancels it (protocol cancel request). Without an
   * answer past its deadline (`waitLimitMs` + the silence budget + an allowance per reward) it fails with node-pg's
   * read timeout: PostgreSQL unavailable for now (its connection went silent), and the connection is dropped.
   */
  private async runStatement(tasks: readonly UserTask[], waitLimitMs: number): Promise<SettlementRow[]> {
    const rewards = tasks.reduce((sum, task) => sum + task.rewards, 0);
    const deadlineMs = Math.ceil(
      waitLimitMs + (this.options.silenceMs ?? DEFAULT_CONFIG.pgSilenceMs) + rewards * DEADLINE_MS_PER_REWARD,
    );
    const query = withDeadline(this.statementOf(tasks, waitLimitMs), deadlineMs);
    let client: pg.PoolClient;
    try {
      client = await this.options.pool.connect();
    } catch (error) {
      throw new ConnectFailed(`could not open a settlement connection: ${describeError(error)}`, { cause: error });
    }
    const started = performance.now();
    let cancelled = false;
    const onAbort = (): void => {
      cancelled = true;
      cancelQuery(client);
    };
    this.options.signal.addEventListener('abort', onAbort, { once: true });
    let broken: Error | undefined;
    try {
      const { rows } = await client.query<SettlementRow>(query);
      return rows;
    } catch (error) {
      if (isLockTimeout(error)) {
        throw new LockWaitCancelled(`waited more than ${waitLimitMs} ms for a row held by another transaction`, {
          cause: error,
        });
      }
      if (classifyDatabaseError(error) === 'unavailable') broken = error as Error;
      throw error;
    } finally {
      this.options.signal.removeEventListener('abort', onAbort);
      // a cancel sent for this statement could reach the connection's next one: it is not used again
      client.release(broken ?? (cancelled ? new Error('statement cancelled: the worker is stopping') : undefined));
      this.options.metrics?.userTransaction.observe((performance.now() - started) / 1000);
      this.options.metrics?.usersPerTransaction.observe(tasks.length);
    }
  }

  /**
   * The settling statement of `tasks` (rows held by other transactions waited for up to `waitLimitMs`), or with
   * `waitLimitMs` null their judging statement. Sent unnamed: a pooler in transaction mode may run each on another
   * server connection (ADR 0014).
   */
  private statementOf(tasks: readonly UserTask[], waitLimitMs: number | null): pg.QueryConfig {
    const first = tasks[0]!.source;
    const limits = [String(waitLimitMs), String(IDLE_IN_STATEMENT_MS)];
    if (first.kind === 'chunk') {
      const batchIds: string[] = [];
      const chunkNos: number[] = [];
      const shards: number[] = [];
      const uids: string[] = [];
      const fences: string[] = [];
      const excludedBatches: string[] = [];
      const excludedRewards: string[] = [];
      for (const task of tasks) {
        const source = task.source;
        if (source.kind !== 'chunk') throw new Error('internal: a settlement group mixes chunk users and replays');
        batchIds.push(source.batchId);
        chunkNos.push(source.chunkNo);
        shards.push(source.shard);
        uids.push(task.uid);
        fences.push(source.fence);
        for (const rewardId of source.excluded) {
          excludedBatches.push(source.batchId);
          excludedRewards.push(rewardId);
        }
      }
      return waitLimitMs === null
        ? { text: JUDGE_CHUNK_USERS_SQL, values: [batchIds, shards, uids, excludedBatches, excludedRewards] }
        : {
            text: SETTLE_CHUNK_USERS_SQL,
            values: [batchIds, chunkNos, shards, uids, fences, excludedBatches, excludedRewards, ...limits],
          };
    }
    const ids: string[] = [];
    const fences: string[] = [];
    for (const task of tasks) {
      if (task.source.kind !== 'replay') throw new Error('internal: a settlement group mixes chunk users and replays');
      ids.push(task.source.deadLetterId);
      fences.push(task.source.fence);
    }
    return waitLimitMs === null
      ? { text: JUDGE_REPLAYS_SQL, values: [ids] }
      : { text: SETTLE_REPLAYS_SQL, values: [ids, fences, ...limits] };
  }

  /**
   * Turns the statement's rows into an outcome per task. A user whose rewards were not all inserted now is judged
   * against the ledger (one more statement for all such users of the group). A user whose statement read another
   * number of rewards than its job loaded fails for now (the job loads it again).
   */
  private async deliverOutcomes(
    tasks: readonly UserTask[],
    rows: readonly SettlementRow[],
    deliver: DeliverOutcome,
  ): Promise<void> {
    const byUid = new Map(rows.map((row) => [row.uid, row]));
    const rowOf = (task: UserTask): SettlementRow =>
      byUid.get(task.uid) ?? { uid: task.uid, read: 0, inserted: 0, fenced: false };
    const toJudge: UserTask[] = [];
    for (const task of tasks) {
      const row = rowOf(task);
      if (row.fenced) {
        deliver(task, FENCED);
      } else if (row.read !== task.rewards) {
        this.options.logger.error(
          {
            uid: task.uid,
            batchId: task.source.batchId,
            expected: task.rewards,
            read: row.read,
            inserted: row.inserted,
          },
          'internal: the settlement statement read another number of rewards than the job loaded for this user; the job will load it again',
        );
        deliver(
          task,
          failedOutcome(
            'UNKNOWN',
            true,
            `read ${row.read} rewards of user ${JSON.stringify(task.uid)} where ${task.rewards} were expected; the job will try again`,
          ),
        );
      } else if (row.inserted === row.read) {
        deliver(task, { kind: 'settled', applied: row.inserted, alreadyApplied: 0, duplicates: 0, conflicts: [] });
      } else toJudge.push(task);
    }
    if (toJudge.length === 0) return;

    let judged: Map<string, Judgement>;
    try {
      judged = await this.judge(toJudge);
    } catch (error) {
      // their statement committed: what is left is to judge and record duplicates, which a later run does
      const outcome = this.options.signal.aborted
        ? INTERRUPTED
        : failedOutcome(
            'UNKNOWN',
            true,
            `could not read back rewards skipped by the settlement: ${error instanceof Error ? error.message : String(error)}`,
          );
      for (const task of toJudge) deliver(task, outcome);
      return;
    }
    for (const task of toJudge) {
      const row = rowOf(task);
      const judgement = judged.get(task.uid) ?? { applied: 0, duplicates: 0, conflicts: [] };
      if (
        judgement.applied + judgement.duplicates + judgement.conflicts.length !== row.read ||
        judgement.applied < row.inserted
      ) {
        deliver(
          task,
          failedOutcome(
            'UNKNOWN',
            true,
            `${row.read - row.inserted} reward(s) of user ${JSON.stringify(task.uid)} were neither inserted nor found in the ledger as expected; the job will try again`,
          ),
        );
        continue;
      }
      deliver(task, {
        kind: 'settled',
        applied: row.inserted,
        alreadyApplied: judgement.applied - row.inserted,
        duplicates: judgement.duplicates,
        conflicts: judgement.conflicts,
      });
    }
  }

  /**
   * Judges the rewards of `tasks` against the ledger (a fresh snapshot, after their statement committed) and records
   * their duplicates; waits out PostgreSQL outages and runs again after clashes.
   */
  private async judge(tasks: readonly UserTask[]): Promise<Map<string, Judgement>> {
    const query = this.statementOf(tasks, null);
    const { rows } = await databaseStep(
      this.options.gate,
      () => this.options.pool.query<JudgedRow>(query),
      this.options.signal,
    );
    const judged = new Map<string, Judgement>();
    for (const row of rows) {
      let judgement = judged.get(row.uid);
      if (!judgement) {
        judgement = { applied: 0, duplicates: 0, conflicts: [] };
        judged.set(row.uid, judgement);
      }
      if (row.outcome === 'already_applied') judgement.applied += row.n;
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
