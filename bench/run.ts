/**
 * `npm run bench` — Windfall end to end against the machine's ceiling and a naive peer, measured in one run.
 *
 *   npm run bench                          100 k rewards over 25 k users: end to end, ceiling, naive peer, ratios
 *   npm run bench -- --rewards 20000 --users 5000 --concurrency 8
 *   npm run bench -- --runs 3              repeat and report medians
 *   npm run bench -- --scale               10 k, 100 k and 1 M rewards: per-reward cost, RSS; writes the chart
 *   npm run bench -- --contention          hot users under concurrent batches and withdrawals: dead-letter rates
 *   npm run bench -- --big-user            one user with 100,000 rewards beside 1,000 others: worker peak RSS
 *   npm run bench -- --fairness --runs 3   a 500-reward batch 2 s after a 300,000-reward one: latency, big batch's rate
 *   npm run bench -- --rtt 0,1,5           also end to end ÷ per-user ceiling with every round trip to PostgreSQL and
 *                                          Redis 1 ms and 5 ms longer (a delaying TCP proxy; 0 = the direct run)
 *   npm run bench -- --pgbouncer           also end to end through PgBouncer (transaction pooling) ÷ direct
 *                                          (with --rtt or --pgbouncer the figures go to topology.json, not results.json)
 *   npm run bench -- --json                one JSON document on stdout (notes go to stderr)
 *
 * Every run uses databases windfall_bench_<id>… and Redis prefixes wfb-<id>… of its own and removes them afterwards
 * (`--keep` keeps them). Needs the built dist/ (`npm run bench` builds first), PostgreSQL and Redis (DATABASE_URL,
 * REDIS_URL; default the local ones), and pgbench for the ceiling (else a minimal pg client loop stands in);
 * `--pgbouncer` needs Debian's pgbouncer (/usr/sbin/pgbouncer, or PGBOUNCER_BIN), run as user `postgres`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG } from '../src/config/config.js';
import { processCpuSeconds } from './cpu-accounting.js';
import { measureCeiling, type CeilingCpu, type CeilingResult, type CeilingVariant } from './ceiling.js';
import { runContention, type ContentionResult } from './contention.js';
import { renderThroughputChart } from './chart.js';
import { runFairness, type FairnessResult, type FairnessVariant } from './fairness.js';
import { runEndToEnd, type EndToEndResult } from './end-to-end.js';
import { delayedRoute, parseRttList, pgBouncerRoute } from './network.js';
import { runNaive, type NaiveResult } from './naive.js';
import { runStatementLayer, type StatementLayerResult } from './statement-layer.js';
import type { MachineInfo, Servers } from './support.js';
import { Cleanup, createBenchDatabase, machineInfo, median, note, round, runId, serversFromEnv } from './support.js';

interface Flags {
  readonly rewards: number;
  readonly users: number;
  readonly concurrency: number | undefined;
  readonly ceilingSeconds: number;
  readonly naiveRewards: number;
  readonly runs: number;
  readonly json: boolean;
  readonly scale: boolean;
  readonly scaleSizes: number[];
  readonly contention: boolean;
  readonly keep: boolean;
  readonly skipNaive: boolean;
  readonly out: string;
  readonly workerEnv: Record<string, string>;
  readonly warmup: number;
  readonly bigUser: boolean;
  readonly fairness: boolean;
  /** Round-trip times (ms) to measure end to end ÷ per-user ceiling at; 0 is the direct run. */
  readonly rtt: number[];
  readonly pgbouncer: boolean;
  readonly pgbouncerPool: number;
}

const USAGE = `usage: npm run bench -- [--rewards N] [--users N] [--concurrency N] [--runs N] [--warmup N] [--json]
                      [--scale [--sizes 10000,100000,1000000]] [--contention] [--big-user] [--fairness]
                      [--ceiling-seconds S] [--naive-rewards N] [--skip-naive] [--keep] [--out DIR]
                      [--worker-env NAME=VALUE ...] [--rtt MS[,MS...]] [--pgbouncer [--pgbouncer-pool N]]`;

function parseFlags(argv: string[]): Flags {
  const { values } = parseArgs({
    args: argv,
    options: {
      rewards: { type: 'string' },
      users: { type: 'string' },
      concurrency: { type: 'string' },
      'ceiling-seconds': { type: 'string' },
      'naive-rewards': { type: 'string' },
      runs: { type: 'string' },
      json: { type: 'boolean' },
      scale: { type: 'boolean' },
      sizes: { type: 'string' },
      contention: { type: 'boolean' },
      'big-user': { type: 'boolean' },
      fairness: { type: 'boolean' },
      keep: { type: 'boolean' },
      'skip-naive': { type: 'boolean' },
      out: { type: 'string' },
      'worker-env': { type: 'string', multiple: true },
      warmup: { type: 'string' },
      rtt: { type: 'string' },
      pgbouncer: { type: 'boolean' },
      'pgbouncer-pool': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const count = (name: string, raw: string | undefined, fallback: number, min = 1): number => {
    if (raw === undefined) return fallback;
    const value = Number(raw.replace(/_/g, ''));
    if (!Number.isInteger(value) || value < min)
      throw new Error(`--${name} must be a whole number ≥ ${min}, got ${raw}`);
    return value;
  };
  const rewards = count('rewards', values.rewards, 100_000);
  const users = count(
    'users',
    values.users,
    values.rewards === undefined ? 25_000 : Math.max(1, Math.round(rewards / 4)),
  );
  if (users > rewards) throw new Error('--users cannot exceed --rewards (every user gets at least one reward)');
  const workerEnv: Record<string, string> = {};
  for (const pair of values['worker-env'] ?? []) {
    const at = pair.indexOf('=');
    if (at < 1) throw new Error(`--worker-env expects NAME=VALUE, got ${pair}`);
    workerEnv[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return {
    rewards,
    users,
    concurrency: values.concurrency === undefined ? undefined : count('concurrency', values.concurrency, 8),
    ceilingSeconds: count('ceiling-seconds', values['ceiling-seconds'], 10),
    naiveRewards: count('naive-rewards', values['naive-rewards'], 20_000),
    runs: count('runs', values.runs, 1),
    json: values.json ?? false,
    scale: values.scale ?? false,
    scaleSizes: (values.sizes ?? '10000,100000,1000000').split(',').map((size) => count('sizes', size, 0)),
    contention: values.contention ?? false,
    keep: values.keep ?? false,
    skipNaive: values['skip-naive'] ?? false,
    out: resolve(values.out ?? 'docs/bench'),
    workerEnv,
    warmup: count('warmup', values.warmup, 10_000, 0),
    bigUser: values['big-user'] ?? false,
    fairness: values.fairness ?? false,
    rtt: values.rtt === undefined ? [] : parseRttList(values.rtt),
    pgbouncer: values.pgbouncer ?? false,
    pgbouncerPool: count('pgbouncer-pool', values['pgbouncer-pool'], 20),
  };
}

/** Users per transaction of the worker (its WINDFALL_USERS_PER_TRANSACTION; default the configuration's). */
function usersPerTransactionOf(flags: Flags): number {
  return Number(flags.workerEnv['WINDFALL_USERS_PER_TRANSACTION'] ?? DEFAULT_CONFIG.usersPerTransaction);
}

/** Transactions in flight of the worker (its WINDFALL_CONCURRENCY; default the configuration's). */
function transactionsOf(flags: Flags): number {
  return flags.concurrency ?? Number(flags.workerEnv['WINDFALL_CONCURRENCY'] ?? DEFAULT_CONFIG.concurrency);
}

/** Clients of the ceiling and of the naive peer: 8 (the issue's definition of the ceiling), or `--concurrency`. */
function concurrencyOf(flags: Flags): number {
  return flags.concurrency ?? 8;
}

interface RunFigures {
  readonly endToEnd: EndToEndResult;
  /** The ceiling variants measured before the end-to-end run. */
  readonly ceiling: CeilingResult[];
  /** The one-statement ceiling measured again right after it (load on a shared machine drifts). */
  readonly ceilingAfter: CeilingResult | null;
  /** Mean of the one-statement ceiling before and after: the figure the ratio uses. */
  readonly ceilingTps: number;
  readonly naive: NaiveResult | null;
  /** Windfall's user statements alone (no queue, lock or job loading), as many users as the batch has. */
  readonly statementLayer: StatementLayerResult;
  /** The one-statement ceiling with twice the clients: the same rate means the cores, not commits, limit it. */
  readonly ceilingDoubleClients: CeilingResult | null;
  readonly ratios: {
    /** End to end users/s ÷ the one-statement-per-user ceiling (the issue's target: ≥ 1.2). */
    readonly usersPerSecondToCeiling: number;
    readonly usersPerSecondToTransactionCeiling: number | null;
    /** End to end users/s ÷ the grouped ceiling's users/s (many users per statement). */
    readonly usersPerSecondToGroupedCeiling: number | null;
    readonly rewardsPerSecondToNaive: number | null;
    readonly statementLayerToCeiling: number;
    readonly statementLayerToGroupedCeiling: number | null;
  };
  /**
   * CPU per unit of work: the ceiling's (PostgreSQL + pgbench, µs per transaction, before and after averaged) and
   * Windfall's (every process, µs per user). When both runs keep the cores busy, users/s ÷ ceiling tends to
   * `boundRatio` = ceiling CPU ÷ Windfall CPU: the ratio is then a matter of CPU per user.
   */
  readonly cpu: {
    readonly ceilingMicrosPerTx: number | null;
    readonly windfallMicrosPerUser: number | null;
    readonly boundRatio: number | null;
  };
  readonly loadAverage: readonly number[];
  /** `--rtt`: end to end ÷ per-user ceiling at each round-trip time (0 ms: the figures above). */
  readonly rtt: readonly RttFigures[];
  /** `--pgbouncer`: end to end through PgBouncer against direct. */
  readonly pgBouncer: PgBouncerFigures | null;
}

/** End to end and the per-user ceiling with every round trip to PostgreSQL and Redis `rttMs` longer. */
interface RttFigures {
  readonly rttMs: number;
  /** Round trip the proxy added, as measured on PostgreSQL's (2 × its mean one-way delay); null at 0 ms. */
  readonly measuredAddedRttMs: number | null;
  /** The one-statement ceiling (pgbench through the same proxy) before and after the end-to-end run, and their mean. */
  readonly ceilingBeforeTps: number;
  readonly ceilingAfterTps: number | null;
  readonly ceilingTps: number;
  readonly ceilingLatencyMs: number | null;
  readonly usersPerSecond: number;
  readonly rewardsPerSecond: number;
  readonly wallSeconds: number;
  readonly latencyMs: EndToEndResult['latencyMs'];
  readonly meanUsersPerTransaction: number;
  /** End to end users/s ÷ the per-user ceiling at the same RTT. */
  readonly usersPerSecondToCeiling: number;
  /** Null at 0 ms (the full result is the run's `endToEnd`). */
  readonly endToEnd: EndToEndResult | null;
}

/** End to end through PgBouncer (transaction pooling) between two direct runs. */
interface PgBouncerFigures {
  readonly poolSize: number;
  readonly pgbouncerVersion: string;
  readonly endToEnd: EndToEndResult;
  /**
   * PgBouncer's own CPU µs per user settled, the warm-up batch's users counted (its process on this machine; null
   * when unknown): on a machine whose cores are busy, what the pooler takes is not left to the rest.
   */
  readonly pgbouncerCpuMicrosPerUser: number | null;
  /** The run's end-to-end users/s (before) and a direct run right after the PgBouncer one, and their mean. */
  readonly directBeforeUsersPerSecond: number;
  readonly directAfterUsersPerSecond: number;
  readonly directUsersPerSecond: number;
  /** PgBouncer users/s ÷ the mean of the direct runs around it (the issue's target: ≥ 0.9). */
  readonly usersPerSecondToDirect: number;
}

/** PostgreSQL + pgbench CPU µs per transaction, averaged over the runs that have it; null when none has. */
function cpuPerTransaction(results: readonly (CeilingResult | undefined)[]): number | null {
  const totals = results.flatMap((result) => {
    const cpu = result?.cpu;
    return cpu && cpu.postgresMicros !== null && cpu.clientMicros !== null
      ? [cpu.postgresMicros + cpu.clientMicros]
      : [];
  });
  return totals.length === 0 ? null : round(totals.reduce((sum, value) => sum + value, 0) / totals.length, 1);
}

function variantOf(results: readonly CeilingResult[], variant: CeilingVariant): CeilingResult | undefined {
  return results.find((result) => result.variant === variant);
}

function tpsOf(results: readonly CeilingResult[], variant: CeilingVariant): number | null {
  return variantOf(results, variant)?.tps ?? null;
}

function usersPerSecondOf(results: readonly CeilingResult[], variant: CeilingVariant): number | null {
  return variantOf(results, variant)?.usersPerSecond ?? null;
}

/** PostgreSQL CPU µs per user of a ceiling variant (per statement ÷ users per statement). */
function postgresMicrosPerUser(results: readonly CeilingResult[], variant: CeilingVariant): number | null {
  const result = variantOf(results, variant);
  const micros = result?.cpu?.postgresMicros;
  return result && micros !== null && micros !== undefined ? round(micros / result.usersPerTransaction, 1) : null;
}

async function measureOnce(
  flags: Flags,
  servers: Servers,
  machine: MachineInfo,
  dir: string,
  run: number,
): Promise<RunFigures> {
  const id = runId();
  const cleanup = new Cleanup(servers, flags.keep);
  const clients = concurrencyOf(flags);
  const rewardsPerUser = Math.max(1, Math.round(flags.rewards / flags.users));
  try {
    note(
      `run ${run} (id ${id}), load average ${(await import('node:os'))
        .loadavg()
        .map((v) => v.toFixed(2))
        .join(' ')}`,
    );
    const ceilingDb = cleanup.database(`windfall_bench_${id}_ceiling`);
    await createBenchDatabase(servers, ceilingDb);
    const ceilingOptions = {
      servers,
      database: ceilingDb,
      dir,
      clients,
      rewardsPerUser,
      seconds: flags.ceilingSeconds,
      processes: machine.processes,
      usersPerStatement: 32,
    };
    const ceiling = await measureCeiling(ceilingOptions);
    // twice the clients: when the rate does not grow with them, the ceiling is the cores', not the commit rate's
    const [doubled] = await measureCeiling({ ...ceilingOptions, clients: clients * 2, variants: ['statement'] });
    const statementLayer = await runStatementLayer({
      servers,
      database: ceilingDb,
      users: flags.users,
      rewardsPerUser,
      transactions: transactionsOf(flags),
      usersPerTransaction: usersPerTransactionOf(flags),
      processes: machine.processes,
    });

    const endToEnd = await runEndToEnd({
      servers,
      cleanup: new Cleanup(servers, flags.keep),
      id: `${id}_e2e`,
      dir,
      rewards: flags.rewards,
      users: flags.users,
      concurrency: flags.concurrency,
      workerEnv: flags.workerEnv,
      warmup: flags.warmup,
      processes: machine.processes,
    });

    const pgBouncer = flags.pgbouncer
      ? await measurePgBouncer(flags, servers, machine, dir, `${id}_pgb`, endToEnd)
      : null;

    const [after] = await measureCeiling({ ...ceilingOptions, variants: ['statement'] });
    const before = tpsOf(ceiling, 'statement')!;
    const ceilingTps = after ? (before + after.tps) / 2 : before;
    const rtt: RttFigures[] = [];
    for (const ms of flags.rtt) {
      rtt.push(
        ms === 0
          ? {
              rttMs: 0,
              measuredAddedRttMs: null,
              ceilingBeforeTps: before,
              ceilingAfterTps: after?.tps ?? null,
              ceilingTps: round(ceilingTps),
              ceilingLatencyMs: variantOf(ceiling, 'statement')?.latencyMs ?? null,
              usersPerSecond: endToEnd.usersPerSecond,
              rewardsPerSecond: endToEnd.rewardsPerSecond,
              wallSeconds: endToEnd.wallSeconds,
              latencyMs: endToEnd.latencyMs,
              meanUsersPerTransaction: endToEnd.transactions.meanUsersPerTransaction,
              usersPerSecondToCeiling: round(endToEnd.usersPerSecond / ceilingTps, 3),
              endToEnd: null,
            }
          : await measureAtRtt(flags, servers, machine, dir, `${id}_rtt${String(ms).replace('.', 'p')}`, ms),
      );
    }

    const naive = flags.skipNaive
      ? null
      : await runNaive({
          servers,
          cleanup: new Cleanup(servers, flags.keep),
          id: `${id}_naive`,
          dir,
          rewards: flags.naiveRewards,
          users: Math.max(1, Math.round(flags.naiveRewards / rewardsPerUser)),
          concurrency: clients,
        });
    const transactionTps = tpsOf(ceiling, 'transaction');
    const ceilingCpu = cpuPerTransaction([variantOf(ceiling, 'statement'), after]);
    const groupedUsers = usersPerSecondOf(ceiling, 'grouped');
    return {
      endToEnd,
      ceiling,
      ceilingAfter: after ?? null,
      ceilingTps: round(ceilingTps),
      naive,
      statementLayer,
      ceilingDoubleClients: doubled ?? null,
      ratios: {
        usersPerSecondToCeiling: round(endToEnd.usersPerSecond / ceilingTps, 3),
        usersPerSecondToTransactionCeiling: transactionTps ? round(endToEnd.usersPerSecond / transactionTps, 3) : null,
        usersPerSecondToGroupedCeiling: groupedUsers ? round(endToEnd.usersPerSecond / groupedUsers, 3) : null,
        rewardsPerSecondToNaive: naive ? round(endToEnd.rewardsPerSecond / naive.rewardsPerSecond, 2) : null,
        statementLayerToCeiling: round(statementLayer.usersPerSecond / ceilingTps, 3),
        statementLayerToGroupedCeiling: groupedUsers ? round(statementLayer.usersPerSecond / groupedUsers, 3) : null,
      },
      cpu: {
        ceilingMicrosPerTx: ceilingCpu,
        windfallMicrosPerUser: endToEnd.cpu.totalMicros,
        boundRatio:
          ceilingCpu !== null && endToEnd.cpu.totalMicros ? round(ceilingCpu / endToEnd.cpu.totalMicros, 3) : null,
      },
      loadAverage: (await import('node:os')).loadavg().map((v) => round(v, 2)),
      rtt,
      pgBouncer,
    };
  } finally {
    await cleanup.run();
  }
}

/**
 * The per-user ceiling and end to end with every round trip to PostgreSQL and Redis `rttMs` longer: the ceiling's
 * pgbench, the enqueue command and the worker all connect through delaying proxies; the ceiling is measured before
 * and after the end-to-end run and averaged.
 */
async function measureAtRtt(
  flags: Flags,
  servers: Servers,
  machine: MachineInfo,
  dir: string,
  id: string,
  rttMs: number,
): Promise<RttFigures> {
  const cleanup = new Cleanup(servers, flags.keep);
  const route = await delayedRoute(servers, rttMs);
  try {
    note(`${route.label}: PostgreSQL and Redis through delaying proxies`);
    const ceilingDb = cleanup.database(`windfall_bench_${id}_ceiling`);
    await createBenchDatabase(servers, ceilingDb);
    const ceilingOptions = {
      servers: route.servers,
      database: ceilingDb,
      dir,
      clients: concurrencyOf(flags),
      rewardsPerUser: Math.max(1, Math.round(flags.rewards / flags.users)),
      seconds: flags.ceilingSeconds,
      processes: machine.processes,
      variants: ['statement'] as const,
    };
    const [before] = await measureCeiling(ceilingOptions);
    const endToEnd = await runEndToEnd({
      servers,
      via: route.servers,
      cleanup: new Cleanup(servers, flags.keep),
      id: `${id}_e2e`,
      dir,
      rewards: flags.rewards,
      users: flags.users,
      concurrency: flags.concurrency,
      workerEnv: flags.workerEnv,
      warmup: flags.warmup,
      processes: machine.processes,
    });
    const [after] = await measureCeiling(ceilingOptions);
    const ceilingTps = after ? (before!.tps + after.tps) / 2 : before!.tps;
    const measured = route.addedRttMs();
    note(
      `${route.label}: ceiling ${before!.tps}/${after?.tps ?? '-'} tx/s, end to end ${endToEnd.usersPerSecond} users/s, ` +
        `ratio ${round(endToEnd.usersPerSecond / ceilingTps, 3)} (added round trip measured ${measured === null ? '-' : round(measured, 2)} ms)`,
    );
    return {
      rttMs,
      measuredAddedRttMs: measured === null ? null : round(measured, 3),
      ceilingBeforeTps: before!.tps,
      ceilingAfterTps: after?.tps ?? null,
      ceilingTps: round(ceilingTps),
      ceilingLatencyMs: before!.latencyMs,
      usersPerSecond: endToEnd.usersPerSecond,
      rewardsPerSecond: endToEnd.rewardsPerSecond,
      wallSeconds: endToEnd.wallSeconds,
      latencyMs: endToEnd.latencyMs,
      meanUsersPerTransaction: endToEnd.transactions.meanUsersPerTransaction,
      usersPerSecondToCeiling: round(endToEnd.usersPerSecond / ceilingTps, 3),
      endToEnd,
    };
  } finally {
    await route.close();
    await cleanup.run();
  }
}

/**
 * End to end with the enqueue command and the worker connecting to PostgreSQL through PgBouncer in transaction
 * pooling (Redis direct), then directly once more: the ratio compares it with the mean of the run's direct
 * end-to-end figure (`directBefore`) and this second direct one, so that drift of a shared machine falls on both.
 */
async function measurePgBouncer(
  flags: Flags,
  servers: Servers,
  machine: MachineInfo,
  dir: string,
  id: string,
  directBefore: EndToEndResult,
): Promise<PgBouncerFigures> {
  const route = await pgBouncerRoute(servers, flags.pgbouncerPool);
  let pooled: EndToEndResult;
  let version = '?';
  let cpuMicros: number | null = null;
  try {
    note(`${route.label}: end to end with DATABASE_URL naming PgBouncer`);
    version = String(Object.values((await route.bouncer.admin('SHOW VERSION'))[0] ?? {})[0] ?? '?');
    const cpuBefore = processCpuSeconds(route.bouncer.process.pid);
    pooled = await runEndToEnd({
      servers,
      via: route.servers,
      cleanup: new Cleanup(servers, flags.keep),
      id: `${id}_pooled`,
      dir,
      rewards: flags.rewards,
      users: flags.users,
      concurrency: flags.concurrency,
      workerEnv: flags.workerEnv,
      warmup: flags.warmup,
      processes: machine.processes,
    });
    const cpuAfter = processCpuSeconds(route.bouncer.process.pid);
    const warmupUsers = Math.max(1, Math.round((flags.warmup * flags.users) / flags.rewards));
    const users = pooled.users + (flags.warmup > 0 ? warmupUsers : 0);
    if (cpuBefore !== null && cpuAfter !== null) cpuMicros = round(((cpuAfter - cpuBefore) * 1e6) / users, 1);
  } finally {
    await route.close();
  }
  note('direct again (the PgBouncer ratio compares with the mean of the direct runs around it)');
  const directAfter = await runEndToEnd({
    servers,
    cleanup: new Cleanup(servers, flags.keep),
    id: `${id}_direct`,
    dir,
    rewards: flags.rewards,
    users: flags.users,
    concurrency: flags.concurrency,
    workerEnv: flags.workerEnv,
    warmup: flags.warmup,
    processes: machine.processes,
  });
  const direct = (directBefore.usersPerSecond + directAfter.usersPerSecond) / 2;
  note(
    `PgBouncer: ${pooled.usersPerSecond} users/s; direct ${directBefore.usersPerSecond} before, ${directAfter.usersPerSecond} after; ` +
      `ratio ${round(pooled.usersPerSecond / direct, 3)}`,
  );
  return {
    poolSize: flags.pgbouncerPool,
    pgbouncerVersion: version,
    endToEnd: pooled,
    pgbouncerCpuMicrosPerUser: cpuMicros,
    directBeforeUsersPerSecond: directBefore.usersPerSecond,
    directAfterUsersPerSecond: directAfter.usersPerSecond,
    directUsersPerSecond: round(direct),
    usersPerSecondToDirect: round(pooled.usersPerSecond / direct, 3),
  };
}

function formatTable(rows: readonly (readonly (string | number | null)[])[]): string {
  const text = rows.map((row) =>
    row.map((cell) => (cell === null ? '—' : typeof cell === 'number' ? cell.toLocaleString('en-US') : cell)),
  );
  const widths = text[0]!.map((_, column) => Math.max(...text.map((row) => row[column]!.length)));
  return text
    .map((row) =>
      row
        .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
        .join('  '),
    )
    .join('\n');
}

function statementCpu(run: RunFigures): CeilingCpu | null {
  return variantOf(run.ceiling, 'statement')?.cpu ?? null;
}

function percent(share: number | null | undefined): number | null {
  return share === null || share === undefined ? null : round(share * 100);
}

function printRuns(flags: Flags, machine: MachineInfo, runs: readonly RunFigures[]): void {
  const columns = runs.length > 1 ? [...runs.map((_, i) => `run ${i + 1}`), 'median'] : ['value'];
  const pick = (get: (run: RunFigures) => number | null | undefined): (number | null)[] => {
    const values = runs.map((run) => get(run) ?? null);
    if (runs.length === 1) return values;
    const finite = values.filter((value): value is number => value !== null);
    return [...values, finite.length > 0 ? round(median(finite), 3) : null];
  };
  const c = concurrencyOf(flags);
  const rows: (string | number | null)[][] = [
    ['figure', ...columns],
    [`ceiling: pgbench one statement, ${c} clients (tx/s)`, ...pick((r) => r.ceilingTps)],
    [`  the same with ${2 * c} clients (tx/s)`, ...pick((r) => r.ceilingDoubleClients?.tps)],
    ['ceiling: BEGIN/insert/upsert/COMMIT (tx/s)', ...pick((r) => tpsOf(r.ceiling, 'transaction'))],
    [
      'grouped ceiling: pgbench 32 users per statement (users/s)',
      ...pick((r) => usersPerSecondOf(r.ceiling, 'grouped')),
    ],
    ['Windfall end to end: users/s', ...pick((r) => r.endToEnd.usersPerSecond)],
    ['Windfall end to end: rewards/s', ...pick((r) => r.endToEnd.rewardsPerSecond)],
    ['Windfall wall time (s)', ...pick((r) => r.endToEnd.wallSeconds)],
    ['  worker alone after hand-over: users/s', ...pick((r) => r.endToEnd.processUsersPerSecond)],
    ['  file enqueue (CLI process): rewards/s', ...pick((r) => r.endToEnd.enqueueRewardsPerSecond)],
    ['  staging in PostgreSQL: rewards/s', ...pick((r) => r.endToEnd.stagingRewardsPerSecond)],
    ['  latency per user p50 (ms)', ...pick((r) => r.endToEnd.latencyMs.p50)],
    ['  latency per user p99 (ms)', ...pick((r) => r.endToEnd.latencyMs.p99)],
    ['  worker peak RSS (MB)', ...pick((r) => r.endToEnd.workerPeakRssMb)],
    ['  worker CPU per user (µs)', ...pick((r) => r.endToEnd.workerCpuMicrosPerUser)],
    ['  transactions (mean users per transaction)', ...pick((r) => r.endToEnd.transactions.meanUsersPerTransaction)],
    [`naive peer (1 job + 1 tx per reward): rewards/s`, ...pick((r) => r.naive?.rewardsPerSecond)],
    ['RATIO Windfall users/s ÷ per-user ceiling (target ≥ 1.2)', ...pick((r) => r.ratios.usersPerSecondToCeiling)],
    ['ratio Windfall users/s ÷ BEGIN/COMMIT ceiling', ...pick((r) => r.ratios.usersPerSecondToTransactionCeiling)],
    ['ratio Windfall users/s ÷ grouped ceiling', ...pick((r) => r.ratios.usersPerSecondToGroupedCeiling)],
    ['RATIO Windfall rewards/s ÷ naive (target ≥ 20)', ...pick((r) => r.ratios.rewardsPerSecondToNaive)],
    ['statement layer alone (no queue, lock, loading): users/s', ...pick((r) => r.statementLayer.usersPerSecond)],
    ['ratio statement layer ÷ per-user ceiling', ...pick((r) => r.ratios.statementLayerToCeiling)],
    ['ratio statement layer ÷ grouped ceiling', ...pick((r) => r.ratios.statementLayerToGroupedCeiling)],
    ['CPU per unit of work (µs, all cores; Linux, local servers)', ...columns.map(() => '')],
    ['  ceiling: PostgreSQL per transaction', ...pick((r) => statementCpu(r)?.postgresMicros)],
    ['  ceiling: pgbench per transaction', ...pick((r) => statementCpu(r)?.clientMicros)],
    ['  ceiling: machine busy (%)', ...pick((r) => percent(statementCpu(r)?.machineBusyShare))],
    ['  ceiling: CPU stolen by the hypervisor (%)', ...pick((r) => percent(statementCpu(r)?.machineStealShare))],
    ['  ceiling: PostgreSQL + pgbench per transaction, both runs', ...pick((r) => r.cpu.ceilingMicrosPerTx)],
    ['  grouped ceiling: PostgreSQL per user', ...pick((r) => postgresMicrosPerUser(r.ceiling, 'grouped'))],
    ['  statement layer: PostgreSQL per user', ...pick((r) => r.statementLayer.postgresMicros)],
    ['  statement layer: Node per user', ...pick((r) => r.statementLayer.clientMicros)],
    ['  Windfall: PostgreSQL per user', ...pick((r) => r.endToEnd.cpu.postgresMicros)],
    ['  Windfall: worker per user', ...pick((r) => r.endToEnd.cpu.workerMicros)],
    ['  Windfall: Redis per user', ...pick((r) => r.endToEnd.cpu.redisMicros)],
    ['  Windfall: enqueue CLI per user', ...pick((r) => r.endToEnd.cpu.cliMicros)],
    ['  Windfall: total per user', ...pick((r) => r.endToEnd.cpu.totalMicros)],
    ['  Windfall: machine busy, enqueue command (%)', ...pick((r) => percent(r.endToEnd.cpu.machineBusyShareEnqueue))],
    ['  Windfall: machine busy, after hand-over (%)', ...pick((r) => percent(r.endToEnd.cpu.machineBusyShareWorker))],
    ['  Windfall: CPU stolen by the hypervisor (%)', ...pick((r) => percent(r.endToEnd.cpu.machineStealShare))],
    ['CPU bound: ceiling CPU/tx (both runs) ÷ Windfall CPU/user', ...pick((r) => r.cpu.boundRatio)],
    ...flags.rtt.flatMap((ms): (string | number | null)[][] => {
      const at = (r: RunFigures) => r.rtt.find((figures) => figures.rttMs === ms);
      return [
        [
          ms === 0
            ? 'at 0 ms RTT (direct: the figures above)'
            : `at ${ms} ms RTT (PostgreSQL and Redis through a delaying proxy)`,
          ...columns.map(() => ''),
        ],
        ['  per-user ceiling, before and after averaged (tx/s)', ...pick((r) => at(r)?.ceilingTps)],
        ['  per-user ceiling latency (ms)', ...pick((r) => at(r)?.ceilingLatencyMs)],
        ['  Windfall end to end: users/s', ...pick((r) => at(r)?.usersPerSecond)],
        ['  Windfall end to end: rewards/s', ...pick((r) => at(r)?.rewardsPerSecond)],
        ['  latency per user p50 (ms)', ...pick((r) => at(r)?.latencyMs.p50)],
        ['  transactions (mean users per transaction)', ...pick((r) => at(r)?.meanUsersPerTransaction)],
        ['  added round trip as measured (ms)', ...pick((r) => at(r)?.measuredAddedRttMs)],
        [`RATIO at ${ms} ms RTT: Windfall users/s ÷ per-user ceiling`, ...pick((r) => at(r)?.usersPerSecondToCeiling)],
      ];
    }),
    ...(flags.pgbouncer
      ? [
          [`through PgBouncer (transaction pooling, pool size ${flags.pgbouncerPool})`, ...columns.map(() => '')],
          ['  Windfall end to end through PgBouncer: users/s', ...pick((r) => r.pgBouncer?.endToEnd.usersPerSecond)],
          ['  Windfall end to end direct, after it: users/s', ...pick((r) => r.pgBouncer?.directAfterUsersPerSecond)],
          ['  direct: mean of the runs before and after (users/s)', ...pick((r) => r.pgBouncer?.directUsersPerSecond)],
          ['  dead-lettered through PgBouncer', ...pick((r) => r.pgBouncer?.endToEnd.deadLettered)],
          ['  PgBouncer CPU per user (µs, warm-up included)', ...pick((r) => r.pgBouncer?.pgbouncerCpuMicrosPerUser)],
          [
            '  Windfall total CPU per user through PgBouncer (µs)',
            ...pick((r) => r.pgBouncer?.endToEnd.cpu.totalMicros),
          ],
          ['RATIO PgBouncer ÷ direct (target ≥ 0.9)', ...pick((r) => r.pgBouncer?.usersPerSecondToDirect)],
        ]
      : []),
  ];
  const histograms = runs
    .map(
      (run, i) =>
        `  run ${i + 1}: ${run.endToEnd.transactions.usersPerTransaction.map(([users, count]) => `${users}×${count}`).join(' ')}`,
    )
    .join('\n');
  process.stdout.write(
    `Windfall bench — ${flags.rewards.toLocaleString('en-US')} rewards over ${flags.users.toLocaleString('en-US')} users; ceiling and naive ` +
      `peer with ${c} clients; worker ${transactionsOf(flags)} transactions × ${usersPerTransactionOf(flags)} users` +
      `${Object.keys(flags.workerEnv).length ? `, worker env ${JSON.stringify(flags.workerEnv)}` : ''}\n` +
      `machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGb} GB, Node ${machine.node}, PostgreSQL ${machine.postgres} ` +
      `(fsync ${machine.fsync}, synchronous_commit ${machine.synchronousCommit}), Redis ${machine.redis}; load ${machine.loadAverage.join(' ')}\n\n` +
      `${formatTable(rows)}\n\nusers per transaction (users×transactions; every user's rewards in one transaction):\n${histograms}\n`,
  );
}

interface ScaleRow {
  readonly rewards: number;
  readonly users: number;
  readonly ceilingTps: number;
  readonly endToEnd: EndToEndResult;
  readonly ratio: number;
}

async function measureScale(
  flags: Flags,
  servers: Servers,
  machine: MachineInfo,
  dir: string,
): Promise<{ rows: ScaleRow[]; costRatio1MTo100k: number | null }> {
  const rows: ScaleRow[] = [];
  const clients = concurrencyOf(flags);
  for (const rewards of flags.scaleSizes) {
    const users = Math.max(1, Math.round(rewards / 4));
    const id = runId();
    const cleanup = new Cleanup(servers, flags.keep);
    try {
      const ceilingDb = cleanup.database(`windfall_bench_${id}_ceiling`);
      await createBenchDatabase(servers, ceilingDb);
      const [ceiling] = await measureCeiling({
        servers,
        database: ceilingDb,
        dir,
        clients,
        rewardsPerUser: 4,
        seconds: flags.ceilingSeconds,
        variants: ['statement'],
        processes: machine.processes,
      });
      const endToEnd = await runEndToEnd({
        servers,
        cleanup: new Cleanup(servers, flags.keep),
        id: `${id}_e2e`,
        dir,
        rewards,
        users,
        concurrency: flags.concurrency,
        workerEnv: flags.workerEnv,
        warmup: flags.warmup,
        processes: machine.processes,
      });
      rows.push({
        rewards,
        users,
        ceilingTps: ceiling!.tps,
        endToEnd,
        ratio: round(endToEnd.usersPerSecond / ceiling!.tps, 3),
      });
      note(
        `scale ${rewards}: ${endToEnd.usersPerSecond} users/s, ${endToEnd.microsPerReward} µs/reward, RSS ${endToEnd.workerPeakRssMb} MB`,
      );
    } finally {
      await cleanup.run();
    }
  }
  const at = (size: number) => rows.find((row) => row.rewards === size)?.endToEnd.microsPerReward;
  const big = at(1_000_000);
  const mid = at(100_000);
  return { rows, costRatio1MTo100k: big !== undefined && mid !== undefined ? round(big / mid, 3) : null };
}

function printScale(rows: readonly ScaleRow[], costRatio: number | null): void {
  const table: (string | number | null)[][] = [
    [
      'rewards',
      'users',
      'ceiling tx/s',
      'users/s',
      'rewards/s',
      'ratio',
      'µs/reward',
      'enqueue rewards/s',
      'p50 ms',
      'p99 ms',
      'peak RSS MB',
    ],
    ...rows.map((row) => [
      row.rewards.toLocaleString('en-US'),
      row.users,
      row.ceilingTps,
      row.endToEnd.usersPerSecond,
      row.endToEnd.rewardsPerSecond,
      row.ratio,
      row.endToEnd.microsPerReward,
      row.endToEnd.enqueueRewardsPerSecond,
      row.endToEnd.latencyMs.p50,
      row.endToEnd.latencyMs.p99,
      row.endToEnd.workerPeakRssMb,
    ]),
  ];
  process.stdout.write(`\nScale — per-reward cost and worker memory by batch size\n\n${formatTable(table)}\n`);
  process.stdout.write(`per-reward cost at 1 M ÷ at 100 k (target ≤ 1.2): ${costRatio ?? '—'}\n`);
}

function printContention(results: readonly ContentionResult[], runs: number): void {
  const table: (string | number | null)[][] = [
    [
      'policy',
      'rewards',
      'dead-lettered',
      'rate',
      "hot users' rewards",
      'dead-lettered',
      'rate',
      'DLQ entries',
      'wall s',
      'withdrawals ok',
      'withdrawals busy',
    ],
    ...results.map((r) => [
      r.label,
      r.rewards,
      r.deadLetteredRewards,
      `${(r.deadLetterRate * 100).toFixed(2)} %`,
      r.hotRewards,
      r.deadLetteredHotRewards,
      `${(r.hotDeadLetterRate * 100).toFixed(2)} %`,
      r.deadLetteredUsers,
      r.wallSeconds,
      r.withdrawals.applied,
      r.withdrawals.busy,
    ]),
  ];
  process.stdout.write(
    `\nContention — hot users under concurrent batches and withdrawals (${runs} run${runs === 1 ? '' : 's'} added up)\n\n${formatTable(table)}\n`,
  );
}

/**
 * The fairness scenario (a 500-reward batch 2 s after a 300,000-reward one, one default worker), each variant once
 * per run, interleaved so that the machine's slow and fast phases fall on all of them.
 */
async function measureFairness(flags: Flags, servers: Servers, dir: string): Promise<Record<string, unknown>> {
  const variants: FairnessVariant[] = ['alone', 'fifo', 'fair', 'high', 'fair-cli', 'fair-http', 'high-http'];
  const bigRewards = flags.rewards === 100_000 ? 300_000 : flags.rewards;
  const results: FairnessResult[] = [];
  for (let run = 1; run <= flags.runs; run += 1) {
    for (const variant of variants) {
      const cleanup = new Cleanup(servers, flags.keep);
      results.push(
        await runFairness({
          servers,
          cleanup,
          id: `${runId()}_f${variant.replace(/-/g, '_')}`,
          dir,
          variant,
          bigRewards,
          smallRewards: 500,
          delayMs: 2000,
        }),
      );
      const last = results[results.length - 1]!;
      note(
        `${variant}: big ${last.bigSeconds} s (${last.bigRewardsPerSecond} rewards/s), small ${last.smallSeconds ?? '-'} s (enqueue ${last.smallEnqueueSeconds ?? '-'} s), big chunks open then ${last.bigChunksOpenAtSmallDone ?? '-'}/${last.bigChunks}`,
      );
    }
  }
  const of = (variant: FairnessVariant) => results.filter((result) => result.variant === variant);
  const summary = Object.fromEntries(
    variants.map((variant) => {
      const mine = of(variant);
      const alone = of('alone');
      // each run's big-batch throughput against the `alone` run of the same round
      const ratios = mine.map((result, i) => round(result.bigRewardsPerSecond / alone[i]!.bigRewardsPerSecond, 3));
      return [
        variant,
        {
          smallSeconds: mine.map((result) => result.smallSeconds),
          smallSecondsMedian:
            variant === 'alone' ? null : median(mine.map((result) => result.smallSeconds ?? Number.NaN)),
          smallEnqueueSeconds: mine.map((result) => result.smallEnqueueSeconds),
          bigRewardsPerSecond: mine.map((result) => result.bigRewardsPerSecond),
          bigThroughputToAlone: ratios,
          bigThroughputToAloneMedian: median(ratios),
        },
      ];
    }),
  );
  if (!flags.json) {
    const rows = variants.map((variant) => {
      const figures = summary[variant] as {
        smallSeconds: (number | null)[];
        smallEnqueueSeconds: (number | null)[];
        bigRewardsPerSecond: number[];
        bigThroughputToAlone: number[];
      };
      const list = (values: (number | null)[]) => values.map((value) => value ?? '-').join(', ');
      return [
        variant,
        list(figures.smallSeconds),
        list(figures.smallEnqueueSeconds),
        figures.bigRewardsPerSecond.join(', '),
        figures.bigThroughputToAlone.join(', '),
      ];
    });
    process.stdout.write(
      `Fairness — ${bigRewards.toLocaleString('en-US')}-reward batch, then a 500-reward batch 2 s after its enqueue returned; one worker, defaults; ${flags.runs} run(s)\n` +
        `${formatTable([['variant', 'small batch done after (s)', 'of which its enqueue (s)', 'big batch rewards/s', 'big ÷ alone'], ...rows])}\n` +
        `targets: fair ≤ 3 s, high ≤ 2 s, big ÷ alone ≥ 0.9 (the small batch enqueued by the library; *-cli by windfall enqueue, *-http posted to windfall serve)\n`,
    );
  }
  return { bigRewards, smallRewards: 500, delayMs: 2000, runs: results, summary };
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const servers = serversFromEnv();
  const dir = mkdtempSync(join(tmpdir(), 'windfall-bench-'));
  const machine = await machineInfo(servers);
  const document: Record<string, unknown> = {
    machine,
    settings: { ...flags, out: undefined, concurrency: concurrencyOf(flags) },
    startedAt: new Date().toISOString(),
  };
  try {
    if (flags.scale) {
      const { rows, costRatio1MTo100k } = await measureScale(flags, servers, machine, dir);
      document['scale'] = { rows, costRatio1MTo100k };
      mkdirSync(flags.out, { recursive: true });
      const chart = join(flags.out, 'throughput.svg');
      writeFileSync(
        chart,
        renderThroughputChart(
          rows.map((row) => ({
            rewards: row.rewards,
            usersPerSecond: row.endToEnd.usersPerSecond,
            rewardsPerSecond: row.endToEnd.rewardsPerSecond,
            ceilingTps: row.ceilingTps,
          })),
          machine,
        ),
      );
      writeFileSync(join(flags.out, 'scale.json'), `${JSON.stringify(document, null, 2)}\n`);
      note(`wrote ${chart}`);
      if (!flags.json) printScale(rows, costRatio1MTo100k);
    } else if (flags.fairness) {
      document['fairness'] = await measureFairness(flags, servers, dir);
      mkdirSync(flags.out, { recursive: true });
      writeFileSync(join(flags.out, 'fairness.json'), `${JSON.stringify(document, null, 2)}\n`);
    } else if (flags.bigUser) {
      const cleanup = new Cleanup(servers, flags.keep);
      const result = await runEndToEnd({
        servers,
        cleanup,
        id: `${runId()}_big`,
        dir,
        rewards: 4000,
        users: 1000,
        bigUserRewards: 100_000,
        concurrency: flags.concurrency,
        workerEnv: flags.workerEnv,
        warmup: flags.warmup,
        processes: machine.processes,
      });
      document['bigUser'] = result;
      mkdirSync(flags.out, { recursive: true });
      writeFileSync(join(flags.out, 'big-user.json'), `${JSON.stringify(document, null, 2)}\n`);
      if (!flags.json) {
        process.stdout.write(
          `Big user — one user with 100,000 rewards beside 1,000 users with 4 each (${result.rewards.toLocaleString('en-US')} rewards)\n` +
            `  applied ${result.applied}, status ${result.status}, wall ${result.wallSeconds} s, worker peak RSS ${result.workerPeakRssMb} MB (target ≤ 300)\n` +
            `  users split over several transactions: ${result.transactions.splitUsers} (the big user's 100,000 rewards in one transaction)\n` +
            `  users per transaction: ${result.transactions.usersPerTransaction.map(([users, count]) => `${users}×${count}`).join(' ')}\n`,
        );
      }
    } else if (flags.contention) {
      // contention is chance: run the scenario --runs times and add the runs up per policy
      const runs: ContentionResult[][] = [];
      for (let run = 1; run <= flags.runs; run += 1) runs.push(await runContention({ servers, dir, keep: flags.keep }));
      const results = runs[0]!.map((first, index) => {
        const all = runs.map((run) => run[index]!);
        const sum = (get: (r: ContentionResult) => number) => all.reduce((total, r) => total + get(r), 0);
        const rewards = sum((r) => r.rewards);
        const hotRewards = sum((r) => r.hotRewards);
        return {
          ...first,
          rewards,
          users: sum((r) => r.users),
          applied: sum((r) => r.applied),
          deadLetteredRewards: sum((r) => r.deadLetteredRewards),
          deadLetterRate: round(sum((r) => r.deadLetteredRewards) / rewards, 5),
          deadLetteredUsers: sum((r) => r.deadLetteredUsers),
          deadLetterUserRate: round(sum((r) => r.deadLetteredUsers) / sum((r) => r.users), 5),
          hotRewards,
          deadLetteredHotRewards: sum((r) => r.deadLetteredHotRewards),
          hotDeadLetterRate: round(sum((r) => r.deadLetteredHotRewards) / hotRewards, 5),
          wallSeconds: round(median(all.map((r) => r.wallSeconds)), 2),
          withdrawals: {
            applied: sum((r) => r.withdrawals.applied),
            busy: sum((r) => r.withdrawals.busy),
            other: sum((r) => r.withdrawals.other),
          },
        };
      });
      document['contention'] = { runs: flags.runs, total: results, perRun: runs };
      mkdirSync(flags.out, { recursive: true });
      writeFileSync(join(flags.out, 'contention.json'), `${JSON.stringify(document, null, 2)}\n`);
      if (!flags.json) printContention(results, flags.runs);
    } else {
      const runs: RunFigures[] = [];
      for (let run = 1; run <= flags.runs; run += 1) runs.push(await measureOnce(flags, servers, machine, dir, run));
      document['runs'] = runs;
      document['median'] = {
        ceilingTps: median(runs.map((r) => r.ceilingTps)),
        usersPerSecond: median(runs.map((r) => r.endToEnd.usersPerSecond)),
        rewardsPerSecond: median(runs.map((r) => r.endToEnd.rewardsPerSecond)),
        naiveRewardsPerSecond: median(runs.map((r) => r.naive?.rewardsPerSecond ?? Number.NaN)),
        usersPerSecondToCeiling: median(runs.map((r) => r.ratios.usersPerSecondToCeiling)),
        usersPerSecondToGroupedCeiling: median(runs.map((r) => r.ratios.usersPerSecondToGroupedCeiling ?? Number.NaN)),
        groupedCeilingUsersPerSecond: median(runs.map((r) => usersPerSecondOf(r.ceiling, 'grouped') ?? Number.NaN)),
        postgresMicrosPerUser: median(runs.map((r) => r.endToEnd.cpu.postgresMicros ?? Number.NaN)),
        meanUsersPerTransaction: median(runs.map((r) => r.endToEnd.transactions.meanUsersPerTransaction)),
        rewardsPerSecondToNaive: median(runs.map((r) => r.ratios.rewardsPerSecondToNaive ?? Number.NaN)),
        enqueueRewardsPerSecond: median(runs.map((r) => r.endToEnd.enqueueRewardsPerSecond)),
        workerPeakRssMb: median(runs.map((r) => r.endToEnd.workerPeakRssMb ?? Number.NaN)),
        statementLayerToCeiling: median(runs.map((r) => r.ratios.statementLayerToCeiling)),
        cpuBoundRatio: median(runs.map((r) => r.cpu.boundRatio ?? Number.NaN)),
        windfallCpuMicrosPerUser: median(runs.map((r) => r.cpu.windfallMicrosPerUser ?? Number.NaN)),
        ceilingCpuMicrosPerTx: median(runs.map((r) => r.cpu.ceilingMicrosPerTx ?? Number.NaN)),
        ...(flags.rtt.length > 0
          ? {
              rtt: flags.rtt.map((ms) => {
                const at = runs.map((r) => r.rtt.find((figures) => figures.rttMs === ms)!);
                return {
                  rttMs: ms,
                  ceilingTps: median(at.map((figures) => figures.ceilingTps)),
                  usersPerSecond: median(at.map((figures) => figures.usersPerSecond)),
                  usersPerSecondToCeiling: median(at.map((figures) => figures.usersPerSecondToCeiling)),
                };
              }),
            }
          : {}),
        ...(flags.pgbouncer
          ? {
              pgBouncerUsersPerSecond: median(runs.map((r) => r.pgBouncer!.endToEnd.usersPerSecond)),
              pgBouncerToDirect: median(runs.map((r) => r.pgBouncer!.usersPerSecondToDirect)),
            }
          : {}),
      };
      if (flags.runs > 1 || flags.rewards === 100_000) {
        mkdirSync(flags.out, { recursive: true });
        // runs with the network variants keep their own file: results.json stays the plain loopback baseline
        const file = flags.rtt.length > 0 || flags.pgbouncer ? 'topology.json' : 'results.json';
        writeFileSync(join(flags.out, file), `${JSON.stringify(document, null, 2)}\n`);
      }
      if (!flags.json) printRuns(flags, { ...machine, loadAverage: runs[0]!.loadAverage }, runs);
    }
    if (flags.json) process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
