/**
 * The Sentinel failover acceptance of issue 19, at full size: `windfall worker` processes reach Redis through three
 * sentinels only (`REDIS_URL` names no server), a batch of 300,000 rewards is enqueued with `windfall enqueue`, and
 * the primary is SIGKILLed once a share of it is applied (optionally after cutting replication, so that what the
 * primary acknowledged from then on is lost). Then: the time from the kill to the last reward, every balance exact,
 * no ledger entry twice, nothing dead-lettered, `windfall reconcile` exit 0, and what the workers logged.
 *
 *   node dist/bench/soak/sentinel-failover.js [--rewards 300000] [--users 60000] [--workers 2] [--kill-at 30]
 *     [--cut-replication] [--worker-env NAME=VALUE]… [--keep]
 *
 * `--kill-at` is the percentage of the batch applied before the kill. DATABASE_URL names the PostgreSQL server (a
 * database of its own is created there and dropped afterwards). The workers run with the default settings unless
 * `--worker-env` says otherwise. Prints the figures and a JSON summary; exits 1 when a check fails.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { queryRetrying, resilientPool, runWindfall, sleep, startWindfall, type WindfallProcess } from './fault-kit.js';
import { scenarioRewards } from './fault-scenario.js';
import { startRedisSentinelSet, type RedisSentinelSet } from './redis-sentinel.js';

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index === -1) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isSafeInteger(value) || value < 1) {
    process.stderr.write(`--${name} needs a whole number ≥ 1\n`);
    process.exit(2);
  }
  return value;
}

function workerEnvFlags(): Record<string, string> {
  const env: Record<string, string> = {};
  process.argv.forEach((arg, index) => {
    if (arg !== '--worker-env') return;
    const [name, ...value] = (process.argv[index + 1] ?? '').split('=');
    if (!name || value.length === 0) {
      process.stderr.write('--worker-env needs NAME=VALUE\n');
      process.exit(2);
    }
    env[name] = value.join('=');
  });
  return env;
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

const log = (line: string): void => {
  process.stderr.write(`[sentinel] ${new Date().toISOString().slice(11, 23)} ${line}\n`);
};

const rewards = flag('rewards', 300_000);
const users = flag('users', 60_000);
const workerCount = flag('workers', 2);
const killAtPercent = flag('kill-at', 30);
const cutReplication = process.argv.includes('--cut-replication');
const keep = process.argv.includes('--keep');
const serverUrl = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const database = `windfall_sentinel_${randomBytes(5).toString('hex')}`;
const databaseUrl = withDatabase(serverUrl, database);
const batchId = `sentinel-${database.slice(-10)}`;
const dir = mkdtempSync(join(tmpdir(), 'windfall-sentinel-soak-'));
const admin = resilientPool(withDatabase(serverUrl, 'postgres'), 2);
let pool: pg.Pool | undefined;
let set: RedisSentinelSet | undefined;
let workers: WindfallProcess[] = [];
let exitCode = 1;
let cleaning: Promise<void> | undefined;
const cleanUp = (): Promise<void> =>
  (cleaning ??= (async () => {
    await Promise.all(workers.map((worker) => worker.kill9()));
    await pool?.end();
    await set?.destroy();
    if (!keep) await admin.query(`drop database if exists "${database}" with (force)`).catch(() => undefined);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  })());
// an interrupted run leaves no server, worker, database or folder behind
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

try {
  set = await startRedisSentinelSet({ downAfterMs: 2000 });
  log(
    `sentinels ${set.sentinelList}; primary 127.0.0.1:${set.nodes[0]!.port}, replica 127.0.0.1:${set.nodes[1]!.port}`,
  );
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WINDFALL_')) env[key] = value;
  Object.assign(env, {
    // names no server: only the sentinels say where Redis is
    REDIS_URL: 'redis://127.0.0.1:1',
    REDIS_SENTINELS: set.sentinelList,
    DATABASE_URL: databaseUrl,
    WINDFALL_PREFIX: 'sentinel-soak',
    LOG_LEVEL: 'warn',
  });
  const workerEnv: NodeJS.ProcessEnv = { ...env, LOG_LEVEL: 'info', ...workerEnvFlags() };

  const migrated = await runWindfall(['migrate'], env);
  if (migrated.code !== 0) throw new Error(`windfall migrate failed: ${migrated.stderr}`);
  pool = resilientPool(databaseUrl, 2);
  const { rows, expected } = scenarioRewards(rewards, users);
  const file = join(dir, 'rewards.jsonl');
  writeFileSync(file, `${rows.join('\n')}\n`);

  workers = Array.from({ length: workerCount }, () => startWindfall(['worker'], workerEnv));
  const enqueueStarted = Date.now();
  const enqueued = await runWindfall(['enqueue', '--file', file, '--batch-id', batchId, '--json'], env, 600_000);
  if (enqueued.code !== 0) throw new Error(`windfall enqueue failed (${enqueued.code}): ${enqueued.stderr}`);
  log(
    `enqueued ${rewards} rewards for ${expected.size} users in ${((Date.now() - enqueueStarted) / 1000).toFixed(1)} s`,
  );

  const applied = async (): Promise<number> => {
    const { rows: found } = await queryRetrying<{ n: number }>(
      pool!,
      'select count(*)::int as n from ledger_entries where batch_id = $1',
      [batchId],
    );
    return found[0]!.n;
  };
  while ((await applied()) < (rewards * killAtPercent) / 100) await sleep(20);
  let appliedAtCut: number | null = null;
  if (cutReplication) {
    await set.cutReplication();
    appliedAtCut = await applied();
    log(`replication cut at ${appliedAtCut} applied`);
    // what the primary acknowledges from now on is lost with it: let a few more percent be applied
    while ((await applied()) < appliedAtCut + rewards / 50) await sleep(20);
  }
  const appliedAtKill = await applied();
  const old = await set.killPrimary();
  const killedAt = Date.now();
  log(`primary 127.0.0.1:${old.port} SIGKILLed at ${appliedAtKill} applied`);
  const promoted = await set.waitForNewPrimary(old.port, 120_000);
  const promotedAfterMs = Date.now() - killedAt;
  log(`sentinels name 127.0.0.1:${promoted.port} after ${promotedAfterMs} ms`);

  let done = false;
  let last = -1;
  let lastChange = Date.now();
  const progress: [number, number][] = [];
  while (Date.now() - killedAt < 600_000) {
    const now = await applied();
    const { rows: dead } = await queryRetrying<{ n: number }>(
      pool,
      `select coalesce(sum(reward_count), 0)::int as n from dead_letters where batch_id = $1`,
      [batchId],
    );
    if (now + dead[0]!.n >= rewards) {
      done = true;
      break;
    }
    if (now !== last) {
      last = now;
      lastChange = Date.now();
    }
    if (progress.length === 0 || Date.now() - killedAt >= progress.length * 5000) {
      progress.push([Math.round((Date.now() - killedAt) / 1000), now]);
      log(`${now} applied ${((Date.now() - killedAt) / 1000).toFixed(0)} s after the kill`);
    }
    if (Date.now() - lastChange > 180_000) break;
    await sleep(100);
  }
  const completedAfterMs = Date.now() - killedAt;
  log(done ? `every reward settled ${completedAfterMs} ms after the kill` : `stalled at ${last}`);

  const stopCodes = await Promise.all(workers.map((worker) => worker.stop()));
  const logs = workers.map((worker) => worker.output());
  writeFileSync(join(tmpdir(), `${database}-workers.log`), logs.join('\n'));
  const messages = new Map<string, number>();
  for (const line of logs.join('\n').split('\n')) {
    const found = /"level":"(warn|error|fatal)".*"msg":"([^"]*)"/.exec(line);
    if (found) messages.set(`${found[1]} ${found[2]}`, (messages.get(`${found[1]} ${found[2]}`) ?? 0) + 1);
  }

  const { rows: ledger } = await pool.query<{ entries: number; ids: number }>(
    'select count(*)::int as entries, count(distinct operation_id)::int as ids from ledger_entries',
  );
  const { rows: deadLetters } = await pool.query<{ n: number }>('select count(*)::int as n from dead_letters');
  const { rows: balanceRows } = await pool.query<{ uid: string; balance: string }>(
    'select uid, balance::text from wallets',
  );
  const actual = new Map(balanceRows.map((row) => [row.uid, BigInt(row.balance)]));
  const wrongBalances = [...expected].filter(([uid, amount]) => actual.get(uid) !== amount).length;
  const reconcileStarted = Date.now();
  const reconciled = await runWindfall(['reconcile'], env, 600_000);
  const batch = await runWindfall(['batch', batchId, '--json'], env);

  const checks: [string, boolean][] = [
    ['killed mid-batch', appliedAtKill < rewards],
    ['every reward settled', done],
    ['within 120 s of the kill', done && completedAfterMs <= 120_000],
    ['every balance exact', wrongBalances === 0],
    ['no ledger entry twice', ledger[0]!.entries === rewards && ledger[0]!.ids === rewards],
    ['nothing dead-lettered', deadLetters[0]!.n === 0],
    ['reconcile exit 0', reconciled.code === 0],
    ['workers stopped with exit 0', stopCodes.every((code) => code === 0)],
  ];
  for (const [name, ok] of checks) log(`${ok ? 'PASS' : 'FAIL'} ${name}`);
  process.stdout.write(
    `${JSON.stringify(
      {
        rewards,
        users: expected.size,
        workers: workerCount,
        workerSettings: workerEnvFlags(),
        cutReplication,
        appliedAtCut,
        appliedAtKill,
        promotedAfterMs,
        completedAfterMs: done ? completedAfterMs : null,
        progressAfterKill: progress,
        ledgerEntries: ledger[0]!.entries,
        distinctOperations: ledger[0]!.ids,
        deadLetters: deadLetters[0]!.n,
        wrongBalances,
        reconcile: { code: reconciled.code, seconds: (Date.now() - reconcileStarted) / 1000 },
        batch: batch.stdout.trim() ? (JSON.parse(batch.stdout) as unknown) : batch.stderr,
        workerLog: Object.fromEntries([...messages].sort((x, y) => y[1] - x[1])),
        workerLogFile: join(tmpdir(), `${database}-workers.log`),
      },
      null,
      2,
    )}\n`,
  );
  exitCode = checks.every(([, ok]) => ok) ? 0 : 1;
} catch (error) {
  log(`could not run: ${(error as Error).stack ?? String(error)}`);
  for (const worker of workers) process.stderr.write(worker.output().slice(-3000));
} finally {
  await cleanUp();
}
process.exit(exitCode);
