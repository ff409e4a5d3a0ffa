/**
 * The naive peer's worker process: one BullMQ job per reward and one transaction per reward, as someone might write
 * it by hand with the same tools and the same guarantees (the user's Redis lock, an idempotent ledger insert, the
 * balance update in the same transaction). Configured by environment: DATABASE_URL, REDIS_URL, NAIVE_PREFIX,
 * NAIVE_CONCURRENCY. Prints "ready" on stdout once consuming; stops on SIGTERM.
 */
import { randomUUID } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { NAIVE_QUEUE, type NaiveJob } from './naive-shared.js';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

async function main(): Promise<void> {
  const prefix = process.env['NAIVE_PREFIX'] ?? 'naive';
  const concurrency = Number(process.env['NAIVE_CONCURRENCY'] ?? '8');
  const redis = new Redis(process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  const pool = new pg.Pool({ connectionString: process.env['DATABASE_URL'], max: concurrency });

  const handle = async (job: Job<NaiveJob>): Promise<void> => {
    const { rewardId, uid, amount, description, batchId } = job.data;
    const key = `${prefix}:lock:${uid}`;
    const token = randomUUID();
    for (let attempt = 0, delay = 50; ; attempt += 1, delay *= 1.5) {
      if ((await redis.set(key, token, 'PX', 60_000, 'NX')) === 'OK') break;
      if (attempt >= 10) throw new Error(`lock of ${uid} busy`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
    try {
      const client = await pool.connect();
      try {
        await client.query('begin');
        const inserted = await client.query(
          `insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description) values ($1, $2, $3, 'reward', $4, $5)
           on conflict (operation_id) do nothing returning id`,
          [uid, rewardId, amount, batchId, description ?? null],
        );
        if (inserted.rowCount === 1) {
          await client.query(
            `insert into wallets as w (uid, balance) values ($1, $2) on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now()`,
            [uid, amount],
          );
        }
        await client.query('commit');
      } catch (error) {
        await client.query('rollback').catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
    } finally {
      await redis.eval(RELEASE, 1, key, token);
    }
  };

  const worker = new Worker<NaiveJob>(NAIVE_QUEUE, handle, {
    connection: redis,
    prefix,
    concurrency,
    removeOnComplete: { count: 1000 },
    removeOnFail: { count: 1000 },
  });
  worker.on('error', (error) => process.stderr.write(`naive worker error: ${error.message}\n`));
  await worker.waitUntilReady();
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
  await worker.close();
  await pool.end();
  redis.disconnect();
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
