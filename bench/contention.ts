import { loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/log/logger.js';
import { getBatchReport } from '../src/status/batch-status.js';
import { LockBusyError, LockTimeoutError } from '../src/lock/lock-errors.js';
import { openWindfall } from '../src/runtime/windfall.js';
import { DESCRIPTION } from './dataset.js';
import type { Servers } from './support.js';
import {
  childEnv,
  Cleanup,
  createBenchDatabase,
  note,
  poolOn,
  round,
  runId,
  sleep,
  startProcess,
  waitFor,
  WINDFALL_BIN,
} from './support.js';
import { seededRandom } from '../src/runtime/seeded-random.js';

/** The scenario: `batches` batches enqueued at once, all sharing a few hot users that withdrawals also hammer. */
export interface ContentionScenario {
  readonly batches: number;
  readonly rewardsPerBatch: number;
  readonly usersPerBatch: number;
  readonly hotUsers: number;
  /** Share of each batch's rewards that go to the hot users. */
  readonly hotShare: number;
  /** Concurrent withdrawal loops on the hot users while the batches run. */
  readonly withdrawers: number;
}

export const DEFAULT_SCENARIO: ContentionScenario = {
  batches: 8,
  rewardsPerBatch: 5000,
  usersPerBatch: 1000,
  hotUsers: 4,
  hotShare: 0.3,
  withdrawers: 16,
};

/** A worker configuration to compare. */
export interface ContentionVariant {
  readonly label: string;
  readonly workerEnv: Record<string, string>;
}

export const VARIANTS: readonly ContentionVariant[] = [
  { label: 'reward policy (10 retries, 500 ms × 1.5)', workerEnv: {} },
  { label: '0 lock retries ("system busy"), 3 job attempts', workerEnv: { WINDFALL_REWARD_LOCK_RETRIES: '0' } },
  {
    label: '0 lock retries, 1 job attempt (the old lock)',
    workerEnv: { WINDFALL_REWARD_LOCK_RETRIES: '0', WINDFALL_JOB_ATTEMPTS: '1' },
  },
];

export interface ContentionResult {
  readonly label: string;
  readonly workerEnv: Record<string, string>;
  readonly scenario: ContentionScenario;
  readonly rewards: number;
  /** User groups (a user in a batch), the unit of a dead-letter entry. */
  readonly users: number;
  readonly applied: number;
  readonly deadLetteredRewards: number;
  readonly deadLetterRate: number;
  readonly deadLetteredUsers: number;
  readonly deadLetterUserRate: number;
  readonly byReason: Record<string, number>;
  /** Rewards of the hot users (the ones under contention), and how many of them were dead-lettered. */
  readonly hotRewards: number;
  readonly deadLetteredHotRewards: number;
  readonly hotDeadLetterRate: number;
  readonly wallSeconds: number;
  readonly withdrawals: { readonly applied: number; readonly busy: number; readonly other: number };
}

function batchRewards(tag: string, batch: number, scenario: ContentionScenario) {
  const next = seededRandom(1000 + batch);
  const rows: { rewardId: string; uid: string; amount: number; description: string }[] = [];
  for (let n = 0; n < scenario.rewardsPerBatch; n += 1) {
    const uid =
      n >= scenario.usersPerBatch && next() < scenario.hotShare
        ? `${tag}-hot${Math.floor(next() * scenario.hotUsers)}`
        : `${tag}-b${batch}-u${n % scenario.usersPerBatch}`;
    rows.push({
      rewardId: `${tag}-b${batch}-r${n}`,
      uid,
      amount: 1 + Math.floor(next() * 1000),
      description: DESCRIPTION,
    });
  }
  return rows;
}

async function runVariant(
  servers: Servers,
  variant: ContentionVariant,
  scenario: ContentionScenario,
  keep: boolean,
): Promise<ContentionResult> {
  const id = runId();
  const cleanup = new Cleanup(servers, keep);
  const database = cleanup.database(`windfall_bench_${id}_contention`);
  const prefix = cleanup.prefix(`wfb-${id}-contention`);
  const databaseUrl = await createBenchDatabase(servers, database);
  const env = childEnv({
    DATABASE_URL: databaseUrl,
    REDIS_URL: servers.redisUrl,
    WINDFALL_PREFIX: prefix,
    ...variant.workerEnv,
  });
  const worker = cleanup.process(
    startProcess(process.execPath, [WINDFALL_BIN, 'worker'], { ...env, LOG_LEVEL: 'info' }),
  );
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    REDIS_URL: servers.redisUrl,
    WINDFALL_PREFIX: prefix,
    LOG_LEVEL: 'error',
  });
  const windfall = await openWindfall(config, createLogger('error'));
  const pool = poolOn(servers, database, 2);
  const tag = `k${id}`;
  try {
    await waitFor(() => worker.stderr().includes('"worker started"'), 'the worker to start', 30_000);
    const hot = Array.from({ length: scenario.hotUsers }, (_, n) => `${tag}-hot${n}`);
    for (const uid of hot) await windfall.wallet.addBalance(uid, 1_000_000n, { operationId: `${tag}-fund-${uid}` });
    const batches = Array.from({ length: scenario.batches }, (_, b) => batchRewards(tag, b, scenario));
    note(`contention: ${variant.label}`);

    const withdrawals = { applied: 0, busy: 0, other: 0 };
    const done = { value: false };
    const next = seededRandom(7);
    let counter = 0;
    const withdrawing = Array.from({ length: scenario.withdrawers }, async () => {
      while (!done.value) {
        const uid = hot[Math.floor(next() * hot.length)]!;
        counter += 1;
        try {
          await windfall.wallet.withdrawBalance(uid, 1n, { operationId: `${tag}-w${counter}` });
          withdrawals.applied += 1;
        } catch (error) {
          if (error instanceof LockBusyError || error instanceof LockTimeoutError) withdrawals.busy += 1;
          else withdrawals.other += 1;
        }
      }
    });

    const started = Date.now();
    const accepted = await Promise.all(
      batches.map((rows, b) => windfall.producer.enqueueRewards(rows, { batchId: `${tag}-batch-${b}` })),
    );
    const users = accepted.reduce((sum, batch) => sum + batch.users, 0);
    for (;;) {
      const reports = await Promise.all(accepted.map((batch) => getBatchReport(pool, batch.batchId)));
      if (reports.every((report) => report && report.pending === 0)) break;
      if (Date.now() - started > 15 * 60_000) throw new Error('contention scenario did not finish in 15 minutes');
      await sleep(200);
    }
    const wallSeconds = (Date.now() - started) / 1000;
    done.value = true;
    await Promise.all(withdrawing);

    const reports = await Promise.all(accepted.map((batch) => getBatchReport(pool, batch.batchId)));
    const rewards = reports.reduce((sum, report) => sum + report!.total, 0);
    const applied = reports.reduce((sum, report) => sum + report!.applied, 0);
    const deadLetteredRewards = reports.reduce((sum, report) => sum + report!.deadLettered, 0);
    const entries = await pool.query<{ reason: string; n: number }>(
      `select reason, count(*)::int as n from dead_letters where batch_id = any($1::text[]) group by reason`,
      [accepted.map((batch) => batch.batchId)],
    );
    const byReason = Object.fromEntries(entries.rows.map((row) => [row.reason, row.n]));
    const hotSet = new Set(hot);
    const hotRewards = batches.reduce((sum, rows) => sum + rows.filter((row) => hotSet.has(row.uid)).length, 0);
    const hotDead = await pool.query<{ n: number }>(
      `select coalesce(sum(reward_count), 0)::int as n from dead_letters where batch_id = any($1::text[]) and uid = any($2::text[])`,
      [accepted.map((batch) => batch.batchId), hot],
    );
    const deadLetteredHotRewards = hotDead.rows[0]!.n;
    const deadLetteredUsers = entries.rows.reduce((sum, row) => sum + row.n, 0);
    return {
      label: variant.label,
      workerEnv: variant.workerEnv,
      scenario,
      rewards,
      users,
      applied,
      deadLetteredRewards,
      deadLetterRate: round(deadLetteredRewards / rewards, 5),
      deadLetteredUsers,
      deadLetterUserRate: round(deadLetteredUsers / users, 5),
      byReason,
      hotRewards,
      deadLetteredHotRewards,
      hotDeadLetterRate: round(deadLetteredHotRewards / hotRewards, 5),
      wallSeconds: round(wallSeconds, 2),
      withdrawals,
    };
  } finally {
    await pool.end();
    await windfall.close();
    worker.child.kill('SIGTERM');
    await Promise.race([worker.exited, sleep(20_000)]);
    await cleanup.run();
  }
}

/** The contention figure: the same scenario under each variant, one after the other. */
export async function runContention(options: {
  servers: Servers;
  dir: string;
  keep: boolean;
  scenario?: ContentionScenario;
}): Promise<ContentionResult[]> {
  const results: ContentionResult[] = [];
  for (const variant of VARIANTS)
    results.push(await runVariant(options.servers, variant, options.scenario ?? DEFAULT_SCENARIO, options.keep));
  return results;
}
