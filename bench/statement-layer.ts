import pg from 'pg';
import { applyUserOperations } from '../src/wallet/apply-user-operations.js';
import type { LedgerOperation } from '../src/wallet/ledger-operation.js';
import { StatementLanes } from '../src/worker/statement-lanes.js';
import { LANE_DEPTH } from '../src/worker/user-pipeline.js';
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
  /** Connections, as the worker opens one per WINDFALL_CONCURRENCY slot. */
  readonly lanes: number;
  readonly processes?: ServerProcesses;
}

/** Windfall's statement layer alone: throughput and CPU per user. */
export interface StatementLayerResult {
  readonly users: number;
  readonly lanes: number;
  readonly depth: number;
  readonly seconds: number;
  readonly usersPerSecond: number;
  /** PostgreSQL CPU µs per user. */
  readonly postgresMicros: number | null;
  /** This process's CPU µs per user (encoding, lane I/O, decoding). */
  readonly clientMicros: number;
  readonly machineBusyShare: number | null;
}

/**
 * The worker's user statements with nothing around them: no queue, no lock, no job loading. Each user's rewards go
 * as the worker sends them (the same SQL, prepared statements and pipelined connections, {@link LANE_DEPTH} deep),
 * `lanes` connections, until `users` users are applied. Tells the cost of the statements from the cost of the rest.
 */
export async function runStatementLayer(options: StatementLayerOptions): Promise<StatementLayerResult> {
  const pool = new pg.Pool({ connectionString: withDatabase(options.servers.databaseUrl, options.database), max: 2, application_name: 'windfall-bench' });
  const lanes = StatementLanes.forPool(pool, { lanes: options.lanes, depth: LANE_DEPTH });
  const tag = `sl${Date.now().toString(36)}`;
  const operationsOf = (user: number): LedgerOperation[] =>
    Array.from({ length: options.rewardsPerUser }, (_, i) => ({
      operationId: `${tag}-r${user}-${i}`,
      amount: BigInt(1 + ((user * 7 + i) % 1000)),
      kind: 'reward' as const,
      description: DESCRIPTION,
    }));
  const apply = (user: number): Promise<unknown> => applyUserOperations(pool, `${tag}-u${user}`, operationsOf(user), `${tag}-batch`, lanes.run);
  try {
    note(`statement layer alone: ${options.users} users × ${options.rewardsPerUser} rewards, ${options.lanes} connections`);
    // warm up: connections open, statements prepared, code compiled
    let next = 0;
    const warm = Math.min(2000, options.users);
    const drive = async (until: number): Promise<void> => {
      await Promise.all(
        Array.from({ length: options.lanes * LANE_DEPTH }, async () => {
          while (next < until) await apply(next++);
        }),
      );
    };
    await drive(warm);
    const before = cpuSnapshot(options.processes);
    const cpuBefore = process.cpuUsage();
    await drive(warm + options.users);
    const cpu = process.cpuUsage(cpuBefore);
    const usage = cpuBetween(before, cpuSnapshot(options.processes));
    return {
      users: options.users,
      lanes: options.lanes,
      depth: LANE_DEPTH,
      seconds: round(usage.seconds, 3),
      usersPerSecond: round(options.users / usage.seconds),
      postgresMicros: usage.postgres === null ? null : round((usage.postgres * 1e6) / options.users, 1),
      clientMicros: round((cpu.user + cpu.system) / options.users, 1),
      machineBusyShare: usage.machineBusyShare === null ? null : round(usage.machineBusyShare, 3),
    };
  } finally {
    await lanes.close();
    await pool.end();
  }
}
