import { createReadStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/log/logger.js';
import { queueSettingsOf } from '../src/queue/queue-settings.js';
import { RewardProducer } from '../src/producer/reward-producer.js';
import { WindfallQueues } from '../src/queue/windfall-queues.js';
import { readRewardFile } from '../src/rewards/reward-sources.js';
import { openConnections, quitRedis } from '../src/services/connections.js';
import { writeRewardFile } from './dataset.js';
import type { Cleanup, Servers } from './support.js';
import {
  childEnv,
  createBenchDatabase,
  note,
  poolOn,
  round,
  runWindfall,
  sleep,
  startProcess,
  waitFor,
  WINDFALL_BIN,
} from './support.js';

/**
 * How the scenario is run. The big batch is always enqueued by the library's producer in the bench process; the
 * small one:
 * - `alone`: none (the big batch's throughput alone is the baseline);
 * - `fifo`: by the library, chunk jobs first in first out (Windfall before fair scheduling: the producer's
 *   `fairScheduling: false`, for the big batch too);
 * - `fair`, `high`: by the library, `normal` / `high`;
 * - `fair-cli`: by `windfall enqueue` (a process to start on a machine the worker keeps busy);
 * - `fair-http`, `high-http`: posted to a running `windfall serve` (`POST /v1/batches`), as a campaign system would.
 */
export type FairnessVariant = 'alone' | 'fifo' | 'fair' | 'high' | 'fair-cli' | 'fair-http' | 'high-http';

export interface FairnessOptions {
  readonly servers: Servers;
  readonly cleanup: Cleanup;
  readonly id: string;
  readonly dir: string;
  readonly variant: FairnessVariant;
  /** Rewards of the big batch (default 300,000, 4 per user). */
  readonly bigRewards: number;
  /** Rewards of the small batch (default 500, one per user). */
  readonly smallRewards: number;
  /** Wait between the big batch's enqueue returning and the small batch's enqueue starting, ms (default 2000). */
  readonly delayMs: number;
}

export interface FairnessResult {
  readonly variant: FairnessVariant;
  readonly bigRewards: number;
  /** The big batch: from its enqueue's start to its last chunk. */
  readonly bigSeconds: number;
  readonly bigRewardsPerSecond: number;
  /** The small batch: from its enqueue's start to its last chunk (null in `alone`). */
  readonly smallSeconds: number | null;
  /** Of which its enqueue (the command's start to its exit). */
  readonly smallEnqueueSeconds: number | null;
  /** Chunks of the big batch still open when the small one completed. */
  readonly bigChunksOpenAtSmallDone: number | null;
  readonly bigChunks: number;
}

/** Enqueues in this process with the library's producer (`fifo`: chunk jobs first in first out). */
async function enqueueInProcess(
  databaseUrl: string,
  redisUrl: string,
  prefix: string,
  file: string,
  batchId: string,
  fifo: boolean,
  priority?: string,
): Promise<void> {
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    WINDFALL_PREFIX: prefix,
    LOG_LEVEL: 'warn',
  });
  const logger = createLogger('warn');
  const { database, redis } = await openConnections(config, logger);
  const queues = new WindfallQueues(redis, queueSettingsOf(config));
  try {
    const producer = new RewardProducer({
      pool: database.pool,
      queues,
      chunkSize: config.chunkSize,
      fairScheduling: !fifo,
      logger,
    });
    await producer.enqueue(readRewardFile(createReadStream(file), 'jsonl'), {
      batchId,
      ...(priority ? { priority } : {}),
    });
  } finally {
    await queues.close();
    await quitRedis(redis);
    await database.close();
  }
}

/** One run of the scenario: a big batch, then (2 s after its enqueue returned) a small one, on one default worker. */
export async function runFairness(options: FairnessOptions): Promise<FairnessResult> {
  const { servers, cleanup } = options;
  const database = cleanup.database(`windfall_bench_${options.id}`);
  const prefix = cleanup.prefix(`wfb-${options.id.replace(/_/g, '-')}`);
  const databaseUrl = await createBenchDatabase(servers, database);
  const bigFile = join(options.dir, `big-${options.id}.jsonl`);
  const smallFile = join(options.dir, `small-${options.id}.jsonl`);
  const warmFile = join(options.dir, `warm-${options.id}.jsonl`);
  await writeRewardFile(bigFile, {
    rewards: options.bigRewards,
    users: Math.max(1, Math.round(options.bigRewards / 4)),
    tag: `big${options.id}`,
  });
  await writeRewardFile(smallFile, {
    rewards: options.smallRewards,
    users: options.smallRewards,
    tag: `small${options.id}`,
  });
  await writeRewardFile(warmFile, { rewards: 10_000, users: 2500, tag: `warm${options.id}` });
  const env = childEnv({ DATABASE_URL: databaseUrl, REDIS_URL: servers.redisUrl, WINDFALL_PREFIX: prefix });
  const worker = cleanup.process(
    startProcess(process.execPath, [WINDFALL_BIN, 'worker'], { ...env, LOG_LEVEL: 'info' }),
  );
  const pool = poolOn(servers, database, 2);
  const http = options.variant.endsWith('-http');
  const apiToken = `bench-${options.id}`;
  const serve = http
    ? cleanup.process(
        startProcess(process.execPath, [WINDFALL_BIN, 'serve', '--port', '0', '--host', '127.0.0.1'], {
          ...env,
          LOG_LEVEL: 'info',
          WINDFALL_API_TOKEN: apiToken,
        }),
      )
    : undefined;
  const postBatch = async (file: string, batchId: string, priority?: string): Promise<void> => {
    const port = /HTTP server listening on port (\d+)/.exec(serve!.stderr() + serve!.stdout())?.[1];
    const rewards = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as unknown);
    const response = await fetch(`http://127.0.0.1:${port}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ batchId, rewards, ...(priority ? { priority } : {}) }),
    });
    if (response.status !== 202)
      throw new Error(`POST /v1/batches answered ${response.status}: ${await response.text()}`);
  };
  const openChunks = async (batchId: string): Promise<number> =>
    (
      await pool.query<{ n: number }>(
        'select count(*)::int as n from reward_chunks where batch_id = $1 and completed_at is null',
        [batchId],
      )
    ).rows[0]!.n;
  const lastChunkAt = async (batchId: string): Promise<number> =>
    (
      await pool.query<{ at: number }>(
        'select extract(epoch from max(completed_at))::float8 * 1000 as at from reward_chunks where batch_id = $1',
        [batchId],
      )
    ).rows[0]!.at;
  const fifo = options.variant === 'fifo';
  const enqueue = (file: string, batchId: string, priority?: string): Promise<void> =>
    enqueueInProcess(databaseUrl, servers.redisUrl, prefix, file, batchId, fifo, priority);
  try {
    await waitFor(() => worker.stderr().includes('"worker started"'), 'the worker to start', 30_000);
    if (serve)
      await waitFor(
        () => /HTTP server listening on port/.test(serve.stderr() + serve.stdout()),
        'windfall serve to listen',
        30_000,
      );
    await enqueue(warmFile, 'warm');
    await waitFor(async () => (await openChunks('warm')) === 0, 'the warm-up batch', 10 * 60_000, 100);

    note(
      `fairness (${options.variant}): ${options.bigRewards} rewards, then ${options.variant === 'alone' ? 'nothing' : `${options.smallRewards} rewards ${options.delayMs} ms later`}`,
    );
    const bigStarted = Date.now();
    await enqueue(bigFile, 'big');
    let smallSeconds: number | null = null;
    let smallEnqueueSeconds: number | null = null;
    let bigChunksOpenAtSmallDone: number | null = null;
    if (options.variant !== 'alone') {
      await sleep(options.delayMs);
      const smallStarted = Date.now();
      const priority = options.variant.startsWith('high') ? 'high' : undefined;
      if (http) await postBatch(smallFile, 'small', priority);
      else if (options.variant === 'fair-cli')
        await runWindfall(['enqueue', '--file', smallFile, '--batch-id', 'small'], { ...env, LOG_LEVEL: 'warn' });
      else await enqueue(smallFile, 'small', priority);
      smallEnqueueSeconds = round((Date.now() - smallStarted) / 1000, 2);
      await waitFor(async () => (await openChunks('small')) === 0, 'the small batch', 10 * 60_000, 20);
      bigChunksOpenAtSmallDone = await openChunks('big');
      smallSeconds = round(((await lastChunkAt('small')) - smallStarted) / 1000, 2);
    }
    await waitFor(async () => (await openChunks('big')) === 0, 'the big batch', 30 * 60_000, 50);
    const bigSeconds = ((await lastChunkAt('big')) - bigStarted) / 1000;
    const bigChunks = (await pool.query<{ n: number }>(`select chunks as n from reward_batches where batch_id = 'big'`))
      .rows[0]!.n;
    return {
      variant: options.variant,
      bigRewards: options.bigRewards,
      bigSeconds: round(bigSeconds, 2),
      bigRewardsPerSecond: round(options.bigRewards / bigSeconds),
      smallSeconds,
      smallEnqueueSeconds,
      bigChunksOpenAtSmallDone,
      bigChunks,
    };
  } finally {
    await pool.end();
    worker.child.kill('SIGTERM');
    serve?.child.kill('SIGTERM');
    await Promise.race([worker.exited, sleep(20_000)]);
    await cleanup.run();
  }
}
