import { join } from 'node:path';
import { getBatchReport } from '../src/status/batch-status.js';
import { writeRewardFile } from './dataset.js';
import type { ServerProcesses } from './cpu-accounting.js';
import { cpuBetween, cpuSnapshot } from './cpu-accounting.js';
import type { Cleanup, Servers } from './support.js';
import {
  childEnv,
  createBenchDatabase,
  note,
  poolOn,
  processUsage,
  round,
  runWindfall,
  sleep,
  startProcess,
  waitFor,
  WINDFALL_BIN,
  withDatabase,
} from './support.js';

/** One end-to-end run: `windfall enqueue --file` → every reward applied by a separate `windfall worker`. */
export interface EndToEndOptions {
  readonly servers: Servers;
  readonly cleanup: Cleanup;
  readonly id: string;
  /** Scratch directory for the reward file. */
  readonly dir: string;
  readonly rewards: number;
  readonly users: number;
  /** WINDFALL_CONCURRENCY of the worker; undefined = the worker's default. */
  readonly concurrency?: number | undefined;
  /** Extra environment of the worker (tuning experiments); empty = defaults. */
  readonly workerEnv?: Record<string, string>;
  /** Longest wait for the batch, ms. */
  readonly timeoutMs?: number;
  /**
   * Rewards of a batch the worker applies before the measured one (default 0): a worker runs for days, so its code
   * is compiled and its connections are open; a fresh process spends its first seconds on that.
   */
  readonly warmup?: number;
  /** The servers' processes, for CPU accounting. */
  readonly processes?: ServerProcesses;
  /** One more user with this many rewards (the bounded-memory scenario). Default 0. */
  readonly bigUserRewards?: number;
  /**
   * The servers as the enqueue command and the worker reach them (through a delaying proxy, through PgBouncer).
   * Default `servers`. The bench itself (migration, progress, figures, cleanup) always uses `servers`.
   */
  readonly via?: Servers;
}

/** How many transactions settled how many users each (from the ledger entries' xmin). */
export interface TransactionShape {
  /** `[users in the transaction, transactions]`, by users. */
  readonly usersPerTransaction: readonly (readonly [number, number])[];
  readonly transactions: number;
  readonly meanUsersPerTransaction: number;
  /** Users whose rewards were written by more than one transaction: must be 0 (never split). */
  readonly splitUsers: number;
}

/**
 * CPU µs per user of the measured batch, by process (Linux, servers on this machine; null parts where unknown),
 * from the enqueue command's start to the last chunk completed.
 */
export interface EndToEndCpu {
  /** The `windfall enqueue` process: start-up, read, validate, stage, hand over. */
  readonly cliMicros: number | null;
  readonly workerMicros: number | null;
  /** Every PostgreSQL process: staging, loads, user statements, bookkeeping. */
  readonly postgresMicros: number | null;
  readonly redisMicros: number | null;
  /** The sum, when every part is known. */
  readonly totalMicros: number | null;
  /** Busy share of the machine's CPU (0..1) while the enqueue command ran, and after it until the batch was done. */
  readonly machineBusyShareEnqueue: number | null;
  readonly machineBusyShareWorker: number | null;
  /** Share of the machine's CPU stolen by the hypervisor over the whole batch (0..1). */
  readonly machineStealShare: number | null;
}

export interface EndToEndResult {
  readonly rewards: number;
  readonly users: number;
  readonly chunks: number;
  /** Wall time of the `windfall enqueue --file` process (start-up, read, validate, stage, hand over jobs). */
  readonly enqueueSeconds: number;
  readonly enqueueRewardsPerSecond: number;
  /** Staging inside PostgreSQL: the batch row's creation to its jobs handed over (no process start-up). */
  readonly stagingSeconds: number;
  readonly stagingRewardsPerSecond: number;
  /** From the enqueue command's start to the last chunk completed. */
  readonly wallSeconds: number;
  readonly usersPerSecond: number;
  readonly rewardsPerSecond: number;
  /** From the jobs' hand-over to the last chunk completed: the worker alone. */
  readonly processSeconds: number;
  readonly processUsersPerSecond: number;
  /** Per user: its last ledger entry's time minus the enqueue command's start. */
  readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly workerPeakRssMb: number | null;
  /** Worker CPU seconds (user + system) from start to the end of the batch. */
  readonly workerCpuSeconds: number | null;
  /** Worker CPU per user applied, µs. */
  readonly workerCpuMicrosPerUser: number | null;
  /** Wall µs per reward (the scale figure). */
  readonly microsPerReward: number;
  readonly applied: number;
  readonly deadLettered: number;
  readonly status: string;
  /** Rewards the worker applied before the measured batch. */
  readonly warmup: number;
  readonly cpu: EndToEndCpu;
  readonly transactions: TransactionShape;
}

/**
 * Runs the batch through the real CLI and a real worker process with the default settings (or `workerEnv`), in a
 * database and Redis prefix of its own.
 */
export async function runEndToEnd(options: EndToEndOptions): Promise<EndToEndResult> {
  const { servers, cleanup } = options;
  const database = cleanup.database(`windfall_bench_${options.id}`);
  const prefix = cleanup.prefix(`wfb-${options.id.replace(/_/g, '-')}`);
  const databaseUrl = await createBenchDatabase(servers, database);
  const file = join(options.dir, `rewards-${options.id}.jsonl`);
  const tag = `b${options.id}`;
  const total = await writeRewardFile(file, {
    rewards: options.rewards,
    users: options.users,
    tag,
    bigUserRewards: options.bigUserRewards ?? 0,
  });
  const batchId = `bench-${options.id}`;
  const via = options.via ?? servers;
  const env = childEnv({
    DATABASE_URL: options.via ? withDatabase(via.databaseUrl, database) : databaseUrl,
    REDIS_URL: via.redisUrl,
    WINDFALL_PREFIX: prefix,
    ...(options.concurrency !== undefined ? { WINDFALL_CONCURRENCY: String(options.concurrency) } : {}),
    ...options.workerEnv,
  });

  const worker = cleanup.process(
    startProcess(process.execPath, [WINDFALL_BIN, 'worker'], { ...env, LOG_LEVEL: 'info' }),
  );
  const pool = poolOn(servers, database, 2);
  try {
    await waitFor(() => worker.stderr().includes('"worker started"'), 'the worker to start', 30_000);
    const warmup = options.warmup ?? 0;
    if (warmup > 0) {
      note(`warming the worker up with ${warmup} rewards`);
      const warmFile = join(options.dir, `warmup-${options.id}.jsonl`);
      await writeRewardFile(warmFile, {
        rewards: warmup,
        users: Math.max(1, Math.round((warmup * options.users) / options.rewards)),
        tag: `w${options.id}`,
      });
      await runWindfall(['enqueue', '--file', warmFile, '--batch-id', `warmup-${options.id}`, '--json'], {
        ...env,
        LOG_LEVEL: 'warn',
      });
      await waitFor(
        async () =>
          (
            await pool.query<{ n: number }>(
              'select count(*)::int as n from reward_chunks where batch_id = $1 and completed_at is null',
              [`warmup-${options.id}`],
            )
          ).rows[0]!.n === 0,
        'the warm-up batch',
        10 * 60_000,
        100,
      );
    }
    const cpuBefore = processUsage(worker.pid).cpuSeconds;
    note(
      `end to end: ${options.rewards} rewards over ${options.users} users (windfall enqueue --file → windfall worker)`,
    );

    const cpuStart = cpuSnapshot(options.processes);
    const started = Date.now();
    const enqueue = await runWindfall(['enqueue', '--file', file, '--batch-id', batchId, '--json'], {
      ...env,
      LOG_LEVEL: 'warn',
    });
    const enqueueSeconds = (Date.now() - started) / 1000;
    const cpuEnqueued = cpuSnapshot(options.processes);
    const accepted = JSON.parse(enqueue.stdout) as { batchId: string; total: number };
    if (accepted.total !== total) throw new Error(`enqueued ${accepted.total} rewards, expected ${total}`);

    let workerDied: string | number | null = null;
    void worker.exited.then((code) => (workerDied = code));
    const timeoutMs = options.timeoutMs ?? 30 * 60_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const open = await pool.query<{ n: number }>(
        'select count(*)::int as n from reward_chunks where batch_id = $1 and completed_at is null',
        [batchId],
      );
      if (open.rows[0]!.n === 0) break;
      if (workerDied !== null)
        throw new Error(
          `the worker exited (${String(workerDied)}) before the batch was done:\n${worker.stderr().slice(-3000)}`,
        );
      if (Date.now() > deadline) throw new Error(`batch not done after ${timeoutMs} ms`);
      await sleep(50);
    }
    const usage = processUsage(worker.pid);
    const cpuDone = cpuSnapshot(options.processes);

    const times = await pool.query<{
      created: number;
      enqueued: number;
      completed: number;
      chunks: number;
      users: number;
    }>(
      `select extract(epoch from b.created_at)::float8 * 1000 as created,
              extract(epoch from b.enqueued_at)::float8 * 1000 as enqueued,
              (select extract(epoch from max(completed_at))::float8 * 1000 from reward_chunks where batch_id = $1) as completed,
              b.chunks, b.users
       from reward_batches b where b.batch_id = $1`,
      [batchId],
    );
    const { created, enqueued, completed, chunks, users } = times.rows[0]!;
    const latency = await pool.query<{ p50: number; p99: number; max: number }>(
      `with per_user as (select max(created_at) as applied_at from ledger_entries where batch_id = $1 group by uid),
            lat as (select extract(epoch from applied_at)::float8 * 1000 - $2::float8 as ms from per_user)
       select percentile_disc(0.5) within group (order by ms) as p50, percentile_disc(0.99) within group (order by ms) as p99, max(ms) as max from lat`,
      [batchId, started],
    );
    const report = await getBatchReport(pool, batchId);
    if (!report) throw new Error(`batch ${batchId} vanished`);
    const transactions = await transactionShape(pool, batchId);

    const wallSeconds = (completed - started) / 1000;
    const processSeconds = (completed - enqueued) / 1000;
    const stagingSeconds = (enqueued - created) / 1000;
    const cpu = usage.cpuSeconds !== null && cpuBefore !== null ? usage.cpuSeconds - cpuBefore : null;
    const enqueuePhase = cpuBetween(cpuStart, cpuEnqueued);
    const whole = cpuBetween(cpuStart, cpuDone);
    const perUser = (seconds: number | null): number | null =>
      seconds === null ? null : round((seconds * 1e6) / users, 1);
    const share = (value: number | null): number | null => (value === null ? null : round(value, 3));
    const cliMicros = perUser(enqueuePhase.children);
    const workerMicros = perUser(cpu);
    const postgresMicros = perUser(whole.postgres);
    const redisMicros = perUser(whole.redis);
    const parts = [cliMicros, workerMicros, postgresMicros, redisMicros];
    const result: EndToEndResult = {
      rewards: total,
      users,
      chunks,
      enqueueSeconds: round(enqueueSeconds, 3),
      enqueueRewardsPerSecond: round(total / enqueueSeconds),
      stagingSeconds: round(stagingSeconds, 3),
      stagingRewardsPerSecond: round(total / stagingSeconds),
      wallSeconds: round(wallSeconds, 3),
      usersPerSecond: round(users / wallSeconds),
      rewardsPerSecond: round(total / wallSeconds),
      processSeconds: round(processSeconds, 3),
      processUsersPerSecond: round(users / processSeconds),
      latencyMs: {
        p50: round(latency.rows[0]!.p50),
        p99: round(latency.rows[0]!.p99),
        max: round(latency.rows[0]!.max),
      },
      workerPeakRssMb: usage.peakRssMb === null ? null : round(usage.peakRssMb, 1),
      workerCpuSeconds: cpu === null ? null : round(cpu, 2),
      workerCpuMicrosPerUser: cpu === null ? null : round((cpu * 1e6) / users),
      microsPerReward: round((wallSeconds * 1e6) / total, 1),
      applied: report.applied,
      deadLettered: report.deadLettered,
      status: report.status,
      warmup,
      cpu: {
        cliMicros,
        workerMicros,
        postgresMicros,
        redisMicros,
        totalMicros: parts.every((part) => part !== null)
          ? round(
              parts.reduce<number>((sum, part) => sum + (part ?? 0), 0),
              1,
            )
          : null,
        machineBusyShareEnqueue: share(enqueuePhase.machineBusyShare),
        machineBusyShareWorker: share(cpuBetween(cpuEnqueued, cpuDone).machineBusyShare),
        machineStealShare: share(whole.machineStealShare),
      },
      transactions,
    };
    if (report.applied !== total)
      throw new Error(`only ${report.applied} of ${total} rewards were applied: ${JSON.stringify(report)}`);
    if (transactions.splitUsers > 0)
      throw new Error(`${transactions.splitUsers} users had their rewards split over several transactions`);
    return result;
  } finally {
    await pool.end();
    worker.child.kill('SIGTERM');
    await Promise.race([worker.exited, sleep(20_000)]);
    await cleanup.run();
  }
}

/** Users per transaction of a batch, read from its ledger entries (each transaction has its own xmin). */
async function transactionShape(pool: ReturnType<typeof poolOn>, batchId: string): Promise<TransactionShape> {
  const { rows } = await pool.query<{ users: number; transactions: number }>(
    `select users, count(*)::int as transactions
     from (select count(distinct uid)::int as users from ledger_entries where batch_id = $1 group by xmin::text) as t
     group by users order by users`,
    [batchId],
  );
  const split = await pool.query<{ n: number }>(
    `select count(*)::int as n from (select uid from ledger_entries where batch_id = $1 group by uid having count(distinct xmin::text) > 1) as s`,
    [batchId],
  );
  const transactions = rows.reduce((sum, row) => sum + row.transactions, 0);
  const users = rows.reduce((sum, row) => sum + row.users * row.transactions, 0);
  return {
    usersPerTransaction: rows.map((row) => [row.users, row.transactions] as const),
    transactions,
    meanUsersPerTransaction: transactions === 0 ? 0 : round(users / transactions, 1),
    splitUsers: split.rows[0]!.n,
  };
}
