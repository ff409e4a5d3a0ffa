import pg from 'pg';
import { silentLogger } from '../src/log/logger.js';
import { GroupSettlement } from '../src/settlement/group-settlement.js';
import { ServiceGate } from '../src/services/service-gate.js';
import type { UserTask } from '../src/settlement/user-task.js';
import type { ServerProcesses } from './cpu-accounting.js';
import { cpuBetween, cpuSnapshot } from './cpu-accounting.js';
import { DESCRIPTION } from './dataset.js';
import type { Servers } from './support.js';
import { note, round, withDatabase } from './support.js';

/** Options of {@link runStatementLayer}. */
export interface StatementLayerOptions {
  readonly servers: Servers;
  /** A migrated database (the ceiling's). */
  readonly database: string;
  readonly users: number;
  readonly rewardsPerUser: number;
  /** Transactions in flight at once (the worker's WINDFALL_CONCURRENCY), one connection each. */
  readonly transactions: number;
  /** Users per transaction (the worker's WINDFALL_USERS_PER_TRANSACTION). */
  readonly usersPerTransaction: number;
  readonly processes?: ServerProcesses;
}

/** Windfall's settlement statements alone: throughput and CPU per user. */
export interface StatementLayerResult {
  readonly users: number;
  readonly transactions: number;
  readonly usersPerTransaction: number;
  readonly seconds: number;
  readonly usersPerSecond: number;
  /** PostgreSQL CPU µs per user. */
  readonly postgresMicros: number | null;
  /** This process's CPU µs per user (building the statements, reading their answers). */
  readonly clientMicros: number;
  readonly machineBusyShare: number | null;
}

/**
 * The worker's group statements with nothing around them: no queue, no lock, no job loading. The rewards are staged
 * as a batch would be (`reward_batch_items`), then settled by {@link GroupSettlement} exactly as the worker does it,
 * `transactions` at once with `usersPerTransaction` users each. Tells the cost of the statements from the rest.
 */
export async function runStatementLayer(options: StatementLayerOptions): Promise<StatementLayerResult> {
  const url = withDatabase(options.servers.databaseUrl, options.database);
  const control = new pg.Pool({ connectionString: url, max: 2, application_name: 'windfall-bench' });
  const statements = new pg.Pool({
    connectionString: url,
    max: options.transactions,
    application_name: 'windfall-bench',
  });
  const batchId = `sl${Date.now().toString(36)}`;
  const warm = Math.min(2000, options.users);
  const total = warm + options.users;
  const signal = new AbortController().signal;
  const gate = new ServiceGate({
    service: 'PostgreSQL',
    probe: () => control.query('select 1'),
    isFault: () => false,
    logger: silentLogger(),
  });
  const groups = new GroupSettlement({
    pool: statements,
    gate,
    signal,
    logger: silentLogger(),
    lockWaitMs: 5000,
    heldRowWaitMs: 60_000,
  });
  try {
    await control.query(
      `insert into reward_batch_items (batch_id, shard, uid, reward_id, row_no, amount, description)
       select $1, 0, $1 || '-u' || u, $1 || '-r' || u || '-' || i, u * $3 + i, 1 + (u * 7 + i) % 1000, $4
       from generate_series(0, $2 - 1) as u, generate_series(0, $3 - 1) as i`,
      [batchId, total, options.rewardsPerUser, DESCRIPTION],
    );
    // the chunk row whose fence the statements lock (ADR 0013)
    await control.query(
      `insert into reward_chunks (batch_id, chunk_no, shard, first_uid, last_uid, users, rewards)
       values ($1, 0, 0, '', $1 || '-v', $2::int, $2::int * $3::int)`,
      [batchId, total, options.rewardsPerUser],
    );
    await control.query('vacuum analyze reward_batch_items');
    note(
      `statement layer alone: ${options.users} users × ${options.rewardsPerUser} rewards, ${options.transactions} transactions × ` +
        `${options.usersPerTransaction} users at once`,
    );
    const task = (user: number): UserTask => ({
      uid: `${batchId}-u${user}`,
      rewards: options.rewardsPerUser,
      source: { kind: 'chunk', batchId, chunkNo: 0, shard: 0, excluded: [], fence: '0' },
    });
    let next = 0;
    const drive = async (until: number): Promise<void> => {
      await Promise.all(
        Array.from({ length: options.transactions }, async () => {
          while (next < until) {
            const group: UserTask[] = [];
            while (group.length < options.usersPerTransaction && next < until) group.push(task(next++));
            const outcomes = await groups.settleAll(group);
            if (outcomes.some((outcome) => outcome.kind !== 'settled'))
              throw new Error(`statement layer: a group failed: ${JSON.stringify(outcomes)}`);
          }
        }),
      );
    };
    // warm up: connections open, statements prepared, code compiled
    await drive(warm);
    const before = cpuSnapshot(options.processes);
    const cpuBefore = process.cpuUsage();
    await drive(total);
    const cpu = process.cpuUsage(cpuBefore);
    const usage = cpuBetween(before, cpuSnapshot(options.processes));
    return {
      users: options.users,
      transactions: options.transactions,
      usersPerTransaction: options.usersPerTransaction,
      seconds: round(usage.seconds, 3),
      usersPerSecond: round(options.users / usage.seconds),
      postgresMicros: usage.postgres === null ? null : round((usage.postgres * 1e6) / options.users, 1),
      clientMicros: round((cpu.user + cpu.system) / options.users, 1),
      machineBusyShare: usage.machineBusyShare === null ? null : round(usage.machineBusyShare, 3),
    };
  } finally {
    gate.end();
    await control.query('delete from reward_batch_items where batch_id = $1', [batchId]).catch(() => undefined);
    await statements.end();
    await control.end();
  }
}
