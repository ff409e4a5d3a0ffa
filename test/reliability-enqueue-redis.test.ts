import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ServiceUnavailableError } from '../src/services/service-check.js';
import { useTestEnvironment } from './support/environment.js';
import { balances, rewardRows, waitForBatchDone } from './support/batches.js';
import { runCli, startCli, WINDFALL_BIN } from './support/cli.js';
import { startRedisServer, waitFor, type RedisServer } from './support/redis-servers.js';
import { startServe, type ServeProcess } from './support/serve.js';

const env = useTestEnvironment();
const dir = mkdtempSync(join(tmpdir(), 'windfall-enqueue-redis-'));
/** Short enough for a test, long enough for a healthy Redis on a busy machine. */
const HANDOVER_TIMEOUT_MS = 2000;
let redis: RedisServer | undefined;
let serve: ServeProcess | undefined;
afterEach(async () => {
  await serve?.stop();
  serve = undefined;
  await redis?.destroy();
  redis = undefined;
});

const batchRow = async (batchId: string): Promise<{ enqueued: boolean } | undefined> => {
  const { rows } = await env.pool.query<{ enqueued: boolean }>(
    'select enqueued_at is not null as enqueued from reward_batches where batch_id = $1',
    [batchId],
  );
  return rows[0];
};

const rowsFor = (tag: string) =>
  rewardRows(600, (n) => ({ rewardId: `${tag}-${n}`, uid: `${tag}-u${n % 150}`, amount: 1 + (n % 9) }));
const totals = (rows: { uid: string; amount: number | string }[]) => {
  const expected = new Map<string, bigint>();
  for (const row of rows) expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
  return expected;
};

describe('Redis down after a batch is recorded: enqueue gives up in bounded time, and enqueueing again finishes the hand-over', () => {
  it('library: ServiceUnavailableError naming Redis and the batch; after a restart the same call hands the jobs over and the batch is processed', async () => {
    redis = await startRedisServer({ aof: true });
    const windfall = await env.open({ redisUrl: redis.url, handOverTimeoutMs: HANDOVER_TIMEOUT_MS, chunkSize: 100 });
    const rows = rowsFor('lib-down');
    await redis.shutdown();

    const started = Date.now();
    const error = await windfall.producer.enqueueRewards(rows, { batchId: 'lib-down' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect((error as ServiceUnavailableError).service).toBe('Redis');
    expect((error as Error).message).toMatch(
      /^Redis did not take the jobs of batch "lib-down" within 2 s .*enqueue it again with the same batchId/,
    );
    expect(Date.now() - started).toBeLessThan(HANDOVER_TIMEOUT_MS + 10_000);
    expect(await batchRow('lib-down')).toEqual({ enqueued: false });

    await redis.restart();
    await waitFor(() => windfall.redis.status === 'ready', 'the Redis client to reconnect', 30_000, 50);
    const again = await windfall.producer.enqueueRewards([...rows].reverse(), { batchId: 'lib-down' });
    expect(again).toMatchObject({ batchId: 'lib-down', total: 600, created: false });
    expect(await batchRow('lib-down')).toEqual({ enqueued: true });
    let jobs = 0;
    for (let shard = 0; shard < windfall.config.shards; shard += 1) jobs += await windfall.queues.shard(shard).count();
    expect(jobs).toBe(again.chunks);

    await windfall.createWorker().start();
    expect(await waitForBatchDone(env.pool, 'lib-down')).toMatchObject({
      status: 'completed',
      applied: 600,
      deadLettered: 0,
    });
    const actual = await balances(env.pool);
    for (const [uid, amount] of totals(rows)) expect(actual.get(uid), uid).toBe(amount);
  }, 90_000);

  it('CLI: exit 1 with `unavailable` naming Redis once the batch is recorded; after a restart `enqueue --wait` with the same file finishes it', async () => {
    redis = await startRedisServer({ aof: true });
    const rows = rowsFor('cli-down');
    const text = `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`;
    const cliEnv = env.env({
      REDIS_URL: redis.url,
      WINDFALL_HANDOVER_TIMEOUT_MS: String(HANDOVER_TIMEOUT_MS),
      WINDFALL_CHUNK_SIZE: '100',
    });

    // the enqueue reads standard input: it passes its Redis check and starts staging, then waits for the rows
    const child = spawn(
      process.execPath,
      [WINDFALL_BIN, 'enqueue', '--file', '-', '--format', 'jsonl', '--batch-id', 'cli-down', '--json'],
      {
        env: cliEnv,
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const database = new URL(env.databaseUrl).pathname.slice(1);
    await waitFor(
      async () => {
        const { rows: staging } = await env.pool.query(
          // idle in its transaction, having written (the claimed batch row gave it a transaction id): waiting for rows
          `select 1 from pg_stat_activity where datname = $1 and state = 'idle in transaction' and backend_xid is not null`,
          [database],
        );
        return staging.length > 0;
      },
      'the enqueue to claim its batchId',
      30_000,
      50,
    );
    await redis.shutdown();
    child.stdin.end(text);
    const code = await exited;
    expect(code, stderr).toBe(1);
    expect(JSON.parse(stdout)).toEqual({
      error: 'unavailable',
      message: expect.stringMatching(/^Redis did not take the jobs of batch "cli-down" within 2 s/),
    });
    expect(stderr).toContain('windfall: Redis did not take the jobs of batch "cli-down"');
    expect(await batchRow('cli-down')).toEqual({ enqueued: false });

    await redis.restart();
    const worker = startCli(['worker'], cliEnv);
    try {
      writeFileSync(join(dir, 'cli-down.jsonl'), text);
      const finished = await runCli(
        ['enqueue', '--file', join(dir, 'cli-down.jsonl'), '--batch-id', 'cli-down', '--wait', '--json'],
        cliEnv,
      );
      expect(finished.code, finished.stderr).toBe(0);
      expect(finished.stderr).toContain('batch cli-down was already enqueued');
      expect(JSON.parse(finished.stdout)).toMatchObject({
        batchId: 'cli-down',
        status: 'completed',
        applied: 600,
        deadLettered: 0,
        pending: 0,
      });
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
    const actual = await balances(env.pool);
    for (const [uid, amount] of totals(rows)) expect(actual.get(uid), uid).toBe(amount);
  }, 120_000);

  it('HTTP: POST /v1/batches answers 503 unavailable naming Redis; after a restart the same POST answers 202 created:false and hands the jobs over', async () => {
    redis = await startRedisServer({ aof: true });
    serve = await startServe(
      env.env({ REDIS_URL: redis.url, WINDFALL_HANDOVER_TIMEOUT_MS: String(HANDOVER_TIMEOUT_MS) }),
    );
    const post = async (body: object) => {
      const response = await fetch(`${serve!.baseUrl}/v1/batches`, {
        method: 'POST',
        headers: { authorization: `Bearer ${serve!.apiToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    const rows = rowsFor('http-down');
    await redis.shutdown();
    const down = await post({ batchId: 'http-down', rewards: rows });
    expect(down.status).toBe(503);
    expect(down.body).toEqual({
      error: 'unavailable',
      message: expect.stringMatching(/^Redis did not take the jobs of batch "http-down" within 2 s/),
    });
    expect(await batchRow('http-down')).toEqual({ enqueued: false });

    await redis.restart();
    await waitFor(
      async () => (await fetch(`${serve!.baseUrl}/readyz`)).status === 200,
      'windfall serve to be ready again',
      30_000,
      100,
    );
    const again = await post({ batchId: 'http-down', rewards: rows });
    expect(again).toEqual({ status: 202, body: { batchId: 'http-down', total: 600, created: false } });
    expect(await batchRow('http-down')).toEqual({ enqueued: true });
  }, 90_000);
});
