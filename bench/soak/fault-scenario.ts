/**
 * The reliability acceptance scenario, driven from outside through the contract (the `windfall` bin, the
 * database tables the contract lists, signals, a Redis server of its own):
 * enqueue N rewards → worker processes consume them while the scenario kills them with SIGKILL (consecutive
 * rounds), terminates every PostgreSQL backend of the database (rounds), and shuts down and restarts Redis (AOF)
 * → every balance exact, no ledger entry twice, nothing dead-lettered, `windfall reconcile` exit 0 → a balance
 * changed behind Windfall's back makes `windfall reconcile` exit 1 naming that wallet.
 * Used by `npm run soak` (80,000 rewards) and, smaller, by test/reliability-acceptance.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  queryRetrying,
  resilientPool,
  runWindfall,
  sleep,
  startRedisServer,
  startWindfall,
  terminateBackends,
  waitFor,
  windfallBackends,
  type RedisServer,
  type WindfallProcess,
} from './fault-kit.js';

/** Options of {@link runFaultScenario}. */
export interface FaultScenarioOptions {
  /** Any URL of the PostgreSQL server; the scenario creates (and drops) a database of its own there. */
  readonly serverUrl: string;
  readonly rewards: number;
  readonly users: number;
  /** Worker processes running at once. Default 2. */
  readonly workers?: number;
  /** Rewards per shard job. Default 500. */
  readonly chunkSize?: number;
  /** Users in flight per worker process. Default 8. */
  readonly concurrency?: number;
  /** Consecutive rounds of SIGKILL to every worker process (each followed by a restart). Default 2. */
  readonly kills?: number;
  /** Rounds of pg_terminate_backend over the database. Default 4. */
  readonly pgRounds?: number;
  /** Shutdowns and restarts of the Redis server (AOF, fsync always). Default 1. */
  readonly redisRestarts?: number;
  /** Seconds Redis stays down at each restart. Default 1. */
  readonly redisDownSeconds?: number;
  /** More environment for the worker processes. */
  readonly workerEnv?: Readonly<Record<string, string>>;
  /** Keep the database afterwards (for inspection). Default false. */
  readonly keepDatabase?: boolean;
  /** Gives up after this long. Default 15 minutes. */
  readonly timeoutMs?: number;
  readonly log?: (line: string) => void;
}

/** A fault as it happened. */
export interface InjectedFault {
  readonly kind: 'kill' | 'pg_terminate' | 'redis_restart';
  /** Rewards settled when it happened. */
  readonly settled: number;
  readonly atSeconds: number;
  /** Processes killed, or backends terminated. */
  readonly count?: number;
}

/** What the scenario found. */
export interface FaultScenarioResult {
  readonly database: string;
  readonly rewards: number;
  readonly users: number;
  readonly workers: number;
  readonly faults: readonly InjectedFault[];
  /** Every fault happened while rewards were still pending. */
  readonly faultsMidBatch: boolean;
  /** From the batch being enqueued to nothing pending. */
  readonly seconds: number;
  readonly rewardsPerSecond: number;
  /** `windfall batch <id> --json` at the end. */
  readonly batch: Record<string, unknown>;
  /** Users whose balance differs from the generated data (first 20). */
  readonly wrongBalances: readonly { uid: string; expected: string; actual: string }[];
  readonly ledgerEntries: number;
  readonly distinctOperations: number;
  readonly deadLetters: number;
  readonly reconcile: {
    readonly code: number | null;
    readonly seconds: number;
    readonly mismatchCount: number;
    readonly output: string;
  };
  readonly tamper: {
    readonly uid: string;
    readonly code: number | null;
    /** The mismatch listed for that wallet, if any. */
    readonly mismatch: { kind: string; uid: string; expected: string; actual: string } | null;
    readonly otherMismatches: number;
    /** reconcile's exit code once the balance was put back. */
    readonly codeAfterRepair: number | null;
  };
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/** The scenario's rewards: most users get a few, 1 in 10 rewards goes to one of 50 hot users. */
export function scenarioRewards(count: number, users: number): { rows: string[]; expected: Map<string, bigint> } {
  const rows: string[] = [];
  const expected = new Map<string, bigint>();
  const hot = Math.min(50, users);
  for (let n = 0; n < count; n += 1) {
    const uid = n % 10 === 9 ? `soak-hot-${n % hot}` : `soak-u${(n * 7919) % users}`;
    const amount = 1 + ((n * 104_729) % 99_991);
    const rewardId = `soak-${n.toString().padStart(8, '0')}`;
    rows.push(
      JSON.stringify({
        rewardId,
        uid,
        amount,
        description: n % 3 === 0 ? 'reliability soak "quoted", 奖励' : undefined,
      }),
    );
    expected.set(uid, (expected.get(uid) ?? 0n) + BigInt(amount));
  }
  return { rows, expected };
}

/** Runs the scenario; throws only when it cannot run (a check that fails is reported in the result). */
export async function runFaultScenario(options: FaultScenarioOptions): Promise<FaultScenarioResult> {
  const log = options.log ?? (() => undefined);
  const workerCount = options.workers ?? 2;
  const kills = options.kills ?? 2;
  const pgRounds = options.pgRounds ?? 4;
  const redisRestarts = options.redisRestarts ?? 1;
  const timeoutMs = options.timeoutMs ?? 15 * 60_000;
  const database = `windfall_soak_${randomBytes(5).toString('hex')}`;
  const databaseUrl = withDatabase(options.serverUrl, database);
  const batchId = `soak-${database.slice(-10)}`;
  const dir = mkdtempSync(join(tmpdir(), 'windfall-soak-'));
  const admin = resilientPool(withDatabase(options.serverUrl, 'postgres'), 2);
  let pool: pg.Pool | undefined;
  let redis: RedisServer | undefined;
  let workers: WindfallProcess[] = [];

  try {
    redis = await startRedisServer({ aof: true });
    log(`redis-server with AOF (appendfsync always) on port ${redis.port}; database ${database}`);
    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WINDFALL_')) env[key] = value;
    Object.assign(env, {
      REDIS_URL: redis.url,
      DATABASE_URL: databaseUrl,
      WINDFALL_PREFIX: 'soak',
      LOG_LEVEL: 'warn',
      WINDFALL_CHUNK_SIZE: String(options.chunkSize ?? 500),
    });
    const workerEnv: NodeJS.ProcessEnv = {
      ...env,
      WINDFALL_CONCURRENCY: String(options.concurrency ?? 8),
      // a killed worker's user locks and jobs are taken over after these (defaults 60 s and 30 s)
      WINDFALL_REWARD_LOCK_TTL_MS: '3000',
      WINDFALL_JOB_LOCK_MS: '2000',
      // show that the core mechanisms suffice: no recovery watchdog
      WINDFALL_RECOVERY_INTERVAL_MS: '0',
      ...options.workerEnv,
    };

    const migrated = await runWindfall(['migrate'], env);
    if (migrated.code !== 0) throw new Error(`windfall migrate failed: ${migrated.stderr}`);
    pool = resilientPool(databaseUrl, 2);

    const { rows, expected } = scenarioRewards(options.rewards, options.users);
    const file = join(dir, 'rewards.jsonl');
    writeFileSync(file, `${rows.join('\n')}\n`);
    const enqueued = await runWindfall(['enqueue', '--file', file, '--batch-id', batchId, '--json'], env, 600_000);
    if (enqueued.code !== 0) throw new Error(`windfall enqueue failed (${enqueued.code}): ${enqueued.stderr}`);
    log(`enqueued ${options.rewards} rewards for ${expected.size} users as batch ${batchId}`);

    const settledNow = async (): Promise<number> => {
      const { rows: found } = await queryRetrying<{ n: number }>(
        pool!,
        `select (select count(*) from ledger_entries where batch_id = $1)::int
              + (select coalesce(sum(reward_count), 0) from dead_letters where batch_id = $1 and state <> 'replayed')::int as n`,
        [batchId],
      );
      return found[0]!.n;
    };
    const startWorkers = (): void => {
      workers = Array.from({ length: workerCount }, () => startWindfall(['worker'], workerEnv));
    };

    const started = Date.now();
    const at = (): number => Math.round((Date.now() - started) / 100) / 10;
    startWorkers();

    // The faults, each when enough rewards are settled: kills early (each after the restarted workers took the
    // killed jobs over and made progress), then rounds of backend terminations, then the Redis restart.
    const total = options.rewards;
    const plan: { kind: InjectedFault['kind']; fraction: number }[] = [];
    for (let k = 0; k < kills; k += 1) plan.push({ kind: 'kill', fraction: 0.06 + 0.08 * k });
    for (let r = 0; r < pgRounds; r += 1)
      plan.push({ kind: 'pg_terminate', fraction: 0.3 + (0.35 * r) / Math.max(1, pgRounds) });
    for (let r = 0; r < redisRestarts; r += 1)
      plan.push({ kind: 'redis_restart', fraction: 0.7 + (0.15 * r) / Math.max(1, redisRestarts) });

    const faults: InjectedFault[] = [];
    let faultsMidBatch = true;
    let lastKill = 0;
    // each fault also waits for progress since the previous one (1 % of the batch): the workers are running again,
    // with connections open, when the next fault hits — however fast the machine settles rewards
    let settledAtLastFault = -1;
    const progress = Math.max(1, Math.floor(total / 100));
    for (const step of plan) {
      const threshold = Math.floor(total * step.fraction);
      await waitFor(
        async () => {
          const settled = await settledNow();
          return (
            settled >= threshold &&
            (settledAtLastFault < 0 || settled >= settledAtLastFault + progress || settled >= total)
          );
        },
        `${threshold} rewards settled before ${step.kind}`,
        timeoutMs,
        50,
      );
      if (step.kind === 'kill' && lastKill > 0) {
        // the restarted workers must have taken the killed jobs over (job lock 2 s) before they are killed again
        await sleep(Math.max(0, lastKill + 3000 - Date.now()));
      }
      const settled = await settledNow();
      if (settled >= total) faultsMidBatch = false;
      settledAtLastFault = settled;
      if (step.kind === 'kill') {
        const victims = workers;
        await Promise.all(victims.map((worker) => worker.kill9()));
        lastKill = Date.now();
        faults.push({ kind: 'kill', settled, atSeconds: at(), count: victims.length });
        log(`t=${at()}s settled=${settled}: SIGKILL to ${victims.length} worker process(es); starting new ones`);
        startWorkers();
      } else if (step.kind === 'pg_terminate') {
        // a round right after a kill would find the new workers still connecting: wait for their connections
        await waitFor(
          async () => (await windfallBackends(admin, database)) > 0 || (await settledNow()) >= total,
          "Windfall's connections to the database",
          timeoutMs,
          20,
        );
        const terminated = await terminateBackends(admin, database);
        faults.push({ kind: 'pg_terminate', settled, atSeconds: at(), count: terminated });
        log(`t=${at()}s settled=${settled}: pg_terminate_backend ended ${terminated} backend(s) of ${database}`);
        await sleep(300);
      } else {
        await redis.shutdown();
        log(`t=${at()}s settled=${settled}: Redis shut down (AOF)`);
        await sleep((options.redisDownSeconds ?? 1) * 1000);
        await redis.restart();
        faults.push({ kind: 'redis_restart', settled, atSeconds: at() });
        log(`t=${at()}s: Redis restarted on port ${redis.port}`);
      }
    }

    await waitFor(async () => (await settledNow()) >= total, 'every reward settled', timeoutMs, 100);
    const seconds = (Date.now() - started) / 1000;
    log(`all ${total} rewards settled after ${seconds.toFixed(1)} s`);
    const codes = await Promise.all(workers.map((worker) => worker.stop()));
    if (codes.some((code) => code !== 0)) log(`worker exit codes: ${codes.join(', ')}`);
    workers = [];

    const report = await runWindfall(['batch', batchId, '--json'], env);
    const batch = JSON.parse(report.stdout) as Record<string, unknown>;
    const { rows: walletRows } = await queryRetrying<{ uid: string; balance: string }>(
      pool,
      'select uid, balance::text from wallets',
    );
    const actual = new Map(walletRows.map((row) => [row.uid, row.balance]));
    const wrongBalances: { uid: string; expected: string; actual: string }[] = [];
    for (const [uid, amount] of expected) {
      if (actual.get(uid) !== amount.toString())
        wrongBalances.push({ uid, expected: amount.toString(), actual: actual.get(uid) ?? 'no wallet' });
    }
    for (const uid of actual.keys())
      if (!expected.has(uid)) wrongBalances.push({ uid, expected: 'no wallet', actual: actual.get(uid)! });
    const { rows: ledger } = await queryRetrying<{ n: number; d: number }>(
      pool,
      'select count(*)::int as n, count(distinct operation_id)::int as d from ledger_entries',
    );
    const { rows: dead } = await queryRetrying<{ n: number }>(pool, 'select count(*)::int as n from dead_letters');

    const reconciled = await runWindfall(['reconcile', '--json'], env);
    const reconcileReport = JSON.parse(reconciled.stdout || '{}') as { seconds?: number; mismatchCount?: number };
    log(
      `windfall reconcile: exit ${reconciled.code}, ${reconcileReport.mismatchCount} mismatches, ${reconcileReport.seconds} s`,
    );

    // A balance changed behind Windfall's back.
    const victim = [...expected.keys()].sort()[Math.floor(expected.size / 2)]!;
    await queryRetrying(pool, 'update wallets set balance = balance + 1 where uid = $1', [victim]);
    const tampered = await runWindfall(['reconcile', '--json'], env);
    const tamperReport = JSON.parse(tampered.stdout || '{}') as {
      mismatches?: { kind: string; uid: string; expected: string; actual: string }[];
    };
    const found = tamperReport.mismatches?.find((m) => m.uid === victim) ?? null;
    log(
      `balance of ${victim} raised by 1 behind Windfall's back: reconcile exit ${tampered.code}, names it: ${found ? JSON.stringify(found) : 'no'}`,
    );
    await queryRetrying(pool, 'update wallets set balance = balance - 1 where uid = $1', [victim]);
    const repaired = await runWindfall(['reconcile'], env);

    return {
      database,
      rewards: total,
      users: expected.size,
      workers: workerCount,
      faults,
      faultsMidBatch,
      seconds,
      rewardsPerSecond: Math.round(total / seconds),
      batch,
      wrongBalances: wrongBalances.slice(0, 20),
      ledgerEntries: ledger[0]!.n,
      distinctOperations: ledger[0]!.d,
      deadLetters: dead[0]!.n,
      reconcile: {
        code: reconciled.code,
        seconds: reconcileReport.seconds ?? -1,
        mismatchCount: reconcileReport.mismatchCount ?? -1,
        output: reconciled.stderr,
      },
      tamper: {
        uid: victim,
        code: tampered.code,
        mismatch: found ? { kind: found.kind, uid: found.uid, expected: found.expected, actual: found.actual } : null,
        otherMismatches: (tamperReport.mismatches?.length ?? 0) - (found ? 1 : 0),
        codeAfterRepair: repaired.code,
      },
    };
  } finally {
    await Promise.all(workers.map((worker) => worker.kill9()));
    await pool?.end().catch(() => undefined);
    await redis?.destroy().catch(() => undefined);
    if (!options.keepDatabase) {
      await admin.query(`drop database if exists "${database}" with (force)`).catch(() => undefined);
    }
    await admin.end().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
