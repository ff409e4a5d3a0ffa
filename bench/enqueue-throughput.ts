/**
 * File enqueue throughput: rewards/s of the whole `windfall enqueue --file` process (start-up, read, validate,
 * stage with COPY, hand over the jobs), median of N runs per size, and the process's own CPU time per reward
 * (user + system, from `/usr/bin/time`: far less disturbed than wall time by other work on a shared machine). Each run enqueues a JSONL file of valid rewards
 * (4 per user, the seed's description) under a fresh batchId; between runs the staged batch is deleted and its
 * jobs removed, so every run starts from the same tables.
 *
 *   npm run build && node dist/bench/enqueue-throughput.js [--rows 100000,1000000] [--runs 3]
 *
 * Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/windfall_enqueue_bench, created and migrated here)
 * and REDIS_URL; its Redis keys live under WINDFALL_PREFIX (default `wf-enqueue-bench`) and are deleted at the end.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { writeRewardFile } from './dataset.js';
import { childEnv } from './support.js';
import { runWindfall, WINDFALL_BIN } from './soak/fault-kit.js';

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at !== -1 && process.argv[at + 1] !== undefined ? process.argv[at + 1]! : fallback;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** One `windfall …args` run under `/usr/bin/time`: exit code, stderr, and the process's CPU seconds and peak RSS. */
function timedRun(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stderr: string; cpuSeconds: number; maxRssMb: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', 'TIMED %U %S %M', process.execPath, WINDFALL_BIN, ...args], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const timed = /TIMED ([\d.]+) ([\d.]+) (\d+)/.exec(stderr);
      resolve({
        code,
        stderr,
        cpuSeconds: timed ? Number(timed[1]) + Number(timed[2]) : NaN,
        maxRssMb: timed ? Number(timed[3]) / 1024 : NaN,
      });
    });
  });
}

async function main(): Promise<void> {
  const sizes = option('rows', '100000,1000000').split(',').map(Number);
  const runs = Number(option('runs', '3'));
  const databaseUrl = process.env['DATABASE_URL'] || 'postgres://postgres@127.0.0.1:5432/windfall_enqueue_bench';
  const redisUrl = process.env['REDIS_URL'] || 'redis://127.0.0.1:6379';
  const prefix = process.env['WINDFALL_PREFIX'] || 'wf-enqueue-bench';
  const env = childEnv({ DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, WINDFALL_PREFIX: prefix, LOG_LEVEL: 'warn' });
  const migrated = await runWindfall(['migrate'], env);
  if (migrated.code !== 0) throw new Error(`windfall migrate failed: ${migrated.stderr}`);

  const dir = mkdtempSync(join(tmpdir(), 'windfall-enqueue-bench-'));
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  const redis = new Redis(redisUrl);
  const clean = async (): Promise<void> => {
    // batch_events refers to reward_batches (migration 0007): truncated with it
    await pool.query('truncate reward_chunks, reward_batch_items, reward_batches, batch_events');
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  };
  try {
    for (const rows of sizes) {
      const file = join(dir, `rewards-${rows}.jsonl`);
      await writeRewardFile(file, { rewards: rows, users: Math.max(1, Math.floor(rows / 4)), tag: `eb${rows}` });
      const rates: number[] = [];
      const cpu: number[] = [];
      for (let run = 0; run < runs; run += 1) {
        await clean();
        await pool.query('vacuum analyze reward_batch_items');
        const started = performance.now();
        const result = await timedRun(
          ['enqueue', '--file', file, '--batch-id', `enqueue-bench-${rows}-${run}`, '--json'],
          env,
        );
        const seconds = (performance.now() - started) / 1000;
        if (result.code !== 0) throw new Error(`enqueue failed (exit ${result.code}): ${result.stderr}`);
        rates.push(rows / seconds);
        cpu.push((result.cpuSeconds * 1e6) / rows);
        console.log(
          `${rows} rows, run ${run + 1}: ${seconds.toFixed(2)} s, ${Math.round(rows / seconds)} rewards/s, CPU ${result.cpuSeconds.toFixed(2)} s (${((result.cpuSeconds * 1e6) / rows).toFixed(2)} µs/reward), peak RSS ${Math.round(result.maxRssMb)} MB`,
        );
      }
      console.log(
        `${rows} rows: median ${Math.round(median(rates))} rewards/s (runs: ${rates.map((rate) => Math.round(rate)).join(', ')}); CPU median ${median(cpu).toFixed(2)} µs/reward (runs: ${cpu.map((value) => value.toFixed(2)).join(', ')})`,
      );
    }
  } finally {
    await clean().catch(() => undefined);
    await pool.end();
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
