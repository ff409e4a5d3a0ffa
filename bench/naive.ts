import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { writeRewardFile } from './dataset.js';
import { NAIVE_QUEUE, type NaiveJob } from './naive-shared.js';
import type { Cleanup, Servers } from './support.js';
import {
  childEnv,
  createBenchDatabase,
  note,
  poolOn,
  processUsage,
  round,
  sleep,
  startProcess,
  waitFor,
} from './support.js';

const NAIVE_WORKER = fileURLToPath(new URL('./naive-worker.js', import.meta.url));

export interface NaiveOptions {
  readonly servers: Servers;
  readonly cleanup: Cleanup;
  readonly id: string;
  readonly dir: string;
  readonly rewards: number;
  readonly users: number;
  readonly concurrency: number;
  readonly timeoutMs?: number;
}

export interface NaiveResult {
  readonly rewards: number;
  readonly users: number;
  readonly concurrency: number;
  readonly wallSeconds: number;
  readonly rewardsPerSecond: number;
  readonly usersPerSecond: number;
  readonly workerPeakRssMb: number | null;
}

/**
 * The naive peer end to end: read the same kind of file, add one BullMQ job per reward, and let a separate worker
 * process apply each reward in its own transaction under the user's lock, `concurrency` jobs at once.
 */
export async function runNaive(options: NaiveOptions): Promise<NaiveResult> {
  const { servers, cleanup } = options;
  const database = cleanup.database(`windfall_bench_${options.id}`);
  const prefix = cleanup.prefix(`wfb-${options.id.replace(/_/g, '-')}`);
  const databaseUrl = await createBenchDatabase(servers, database);
  const file = join(options.dir, `naive-${options.id}.jsonl`);
  await writeRewardFile(file, { rewards: options.rewards, users: options.users, tag: `n${options.id}` });
  const batchId = `naive-${options.id}`;

  const worker = cleanup.process(
    startProcess(
      process.execPath,
      [NAIVE_WORKER],
      childEnv({
        DATABASE_URL: databaseUrl,
        REDIS_URL: servers.redisUrl,
        NAIVE_PREFIX: prefix,
        NAIVE_CONCURRENCY: String(options.concurrency),
      }),
    ),
  );
  const redis = new Redis(servers.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue<NaiveJob>(NAIVE_QUEUE, {
    connection: redis,
    prefix,
    defaultJobOptions: { attempts: 3, removeOnComplete: { count: 1000 } },
  });
  const pool = poolOn(servers, database, 2);
  try {
    await waitFor(() => worker.stdout().includes('ready'), 'the naive worker to start', 30_000);
    note(
      `naive peer: ${options.rewards} rewards over ${options.users} users, one job and one transaction per reward, ${options.concurrency} at once`,
    );
    const started = Date.now();
    let bulk: { name: string; data: NaiveJob; opts: { jobId: string } }[] = [];
    const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
    for await (const line of lines) {
      if (line === '') continue;
      const reward = JSON.parse(line) as Omit<NaiveJob, 'batchId'>;
      bulk.push({ name: 'reward', data: { ...reward, batchId }, opts: { jobId: reward.rewardId } });
      if (bulk.length >= 1000) {
        await queue.addBulk(bulk);
        bulk = [];
      }
    }
    if (bulk.length > 0) await queue.addBulk(bulk);

    const deadline = Date.now() + (options.timeoutMs ?? 30 * 60_000);
    for (;;) {
      const { rows } = await pool.query<{ n: number }>(
        'select count(*)::int as n from ledger_entries where batch_id = $1',
        [batchId],
      );
      if (rows[0]!.n >= options.rewards) break;
      if (Date.now() > deadline) throw new Error(`naive peer not done: ${rows[0]!.n} of ${options.rewards} applied`);
      await sleep(100);
    }
    const usage = processUsage(worker.pid);
    const { rows } = await pool.query<{ done: number }>(
      'select extract(epoch from max(created_at))::float8 * 1000 as done from ledger_entries where batch_id = $1',
      [batchId],
    );
    const wallSeconds = (rows[0]!.done - started) / 1000;
    return {
      rewards: options.rewards,
      users: options.users,
      concurrency: options.concurrency,
      wallSeconds: round(wallSeconds, 3),
      rewardsPerSecond: round(options.rewards / wallSeconds),
      usersPerSecond: round(options.users / wallSeconds),
      workerPeakRssMb: usage.peakRssMb === null ? null : round(usage.peakRssMb, 1),
    };
  } finally {
    await queue.close().catch(() => undefined);
    redis.disconnect();
    await pool.end();
    worker.child.kill('SIGTERM');
    await Promise.race([worker.exited, sleep(10_000)]);
    await cleanup.run();
  }
}
