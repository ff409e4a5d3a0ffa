import type { JobsOptions } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHttpServer } from '../src/http/server.js';
import { silentLogger } from '../src/log/logger.js';
import { WindfallMetrics } from '../src/metrics/metrics.js';
import { ThrottledRefresh } from '../src/metrics/throttled-refresh.js';
import { chunkJobId } from '../src/queue/job-data.js';
import { chunkJobPriority, type BatchPriority } from '../src/queue/job-priority.js';
import { queueSettingsOf } from '../src/queue/queue-settings.js';
import { readQueueStats, sampleQueueDepths, sampleQueueStats } from '../src/queue/queue-stats.js';
import { WindfallQueues } from '../src/queue/windfall-queues.js';
import { openWindfall, type Windfall } from '../src/runtime/windfall.js';
import { countingRedis } from './support/counting-redis.js';
import { useTestEnvironment } from './support/environment.js';
import { redisCli, startRedisServer, type RedisServer } from './support/redis-servers.js';
import { randomToken } from './support/serve.js';

const env = useTestEnvironment();

/**
 * Adds `count` chunk jobs of batch `batchId` to `queue` as the producer would (each its turn in the lane), created at
 * `timestamp`, 2,000 per addBulk.
 */
async function addChunks(
  queues: WindfallQueues,
  shard: number,
  batchId: string,
  count: number,
  lane: BatchPriority,
  timestamp: number,
): Promise<void> {
  for (let from = 0; from < count; from += 2000) {
    const jobs = Array.from({ length: Math.min(2000, count - from) }, (_, n) => {
      const chunkNo = from + n;
      const opts: JobsOptions = {
        jobId: chunkJobId(batchId, chunkNo),
        priority: chunkJobPriority(lane, chunkNo),
        timestamp,
      };
      return { name: 'chunk', data: { kind: 'chunk' as const, batchId, chunkNo, shard }, opts };
    });
    await queues.shard(shard).addBulk(jobs);
  }
}

describe('ThrottledRefresh', () => {
  it('refreshes at most once per interval, and calls during a refresh share it', async () => {
    let now = 0;
    let refreshes = 0;
    let release: () => void = () => undefined;
    const refresh = new ThrottledRefresh(
      () => {
        refreshes += 1;
        return new Promise<void>((resolve) => (release = resolve));
      },
      5000,
      () => now,
    );
    const first = refresh.run();
    const second = refresh.run();
    expect(refreshes).toBe(1);
    release();
    await Promise.all([first, second]);
    now = 4999;
    await refresh.run();
    expect(refreshes).toBe(1);
    now = 5000;
    const third = refresh.run();
    expect(refreshes).toBe(2);
    release();
    await third;
  });
});

describe('queue figures for /metrics cost the same whatever the queues hold', () => {
  let counting: Awaited<ReturnType<typeof countingRedis>>;
  let queues: WindfallQueues;
  beforeAll(async () => {
    counting = await countingRedis(env.redisUrl, env.prefix);
    queues = new WindfallQueues(counting.redis, queueSettingsOf(env.config()));
  });
  afterAll(async () => {
    await queues?.close();
    counting?.redis.disconnect();
  });

  /** Redis commands and round trips of one sample of every queue. */
  async function sampleCost(): Promise<{ commands: number; roundTrips: number }> {
    await sampleQueueStats(queues); // warm: BullMQ loads its scripts on first use
    counting.counts.reset();
    await sampleQueueDepths(queues, new WindfallMetrics());
    return { commands: counting.counts.commands, roundTrips: counting.counts.roundTrips };
  }

  it('sends as many commands with 20,000 waiting jobs as with 2,000, under 1,000, and finds the oldest', async () => {
    const old = Date.now() - 600_000;
    // a big batch enqueued 10 minutes ago (its last chunks wait longest), a newer one, urgent work ahead of both and
    // bulk work behind them: every lane holds more than a sample reads
    await addChunks(queues, 0, 'cost-big', 1500, 'normal', old);
    await addChunks(queues, 0, 'cost-new', 400, 'normal', old + 300_000);
    await addChunks(queues, 0, 'cost-high', 60, 'high', old + 500_000);
    await addChunks(queues, 0, 'cost-low', 40, 'low', old + 500_000);
    const small = await sampleCost();
    const [sampled] = await sampleQueueStats(queues);
    expect(sampled!.waiting).toBe(2000);
    expect(sampled!.oldestWaitingMs).toBeGreaterThanOrEqual(600_000);

    await addChunks(queues, 0, 'cost-more', 18_000, 'low', old + 400_000);
    const big = await sampleCost();
    expect(big.commands).toBe(small.commands);
    expect(big.roundTrips).toBe(small.roundTrips);
    expect(big.commands).toBeLessThanOrEqual(1000);
    await addChunks(queues, 1, 'cost-other', 2000, 'normal', old + 100_000);

    // the same oldest age as the exact reading of `windfall queues` (which reads every job)
    const [sampledShard0, sampledShard1] = await sampleQueueStats(queues);
    const [exactShard0, exactShard1] = await readQueueStats(queues);
    expect(sampledShard0!.waiting).toBe(20_000);
    expect(sampledShard0!.oldestWaitingMs).toBeGreaterThanOrEqual(600_000);
    expect(Math.abs(sampledShard0!.oldestWaitingMs! - exactShard0!.oldestWaitingMs!)).toBeLessThan(5000);
    expect(sampledShard1!.oldestWaitingMs).toBeGreaterThanOrEqual(500_000);
    expect(Math.abs(sampledShard1!.oldestWaitingMs! - exactShard1!.oldestWaitingMs!)).toBeLessThan(5000);
  }, 120_000);
});

describe('GET /metrics with 20,000 waiting jobs (a Redis of its own, counted with INFO commandstats)', () => {
  let redis: RedisServer;
  let windfall: Windfall;
  beforeAll(async () => {
    redis = await startRedisServer({ aof: false });
    windfall = await openWindfall(env.config({ redisUrl: redis.url }), silentLogger(), {
      metrics: new WindfallMetrics(),
    });
  });
  afterAll(async () => {
    await windfall?.close();
    await redis?.destroy();
  });

  /** Commands Redis has run (INFO commandstats), less the INFO calls themselves. */
  async function commandsRun(): Promise<number> {
    const { output } = await redisCli(redis.port, ['info', 'commandstats']);
    let calls = 0;
    for (const match of output.matchAll(/^cmdstat_(\S+):calls=(\d+)/gm))
      if (match[1] !== 'info') calls += Number(match[2]);
    return calls;
  }

  it('answers with under 1,000 commands per scrape, the same at 2,000 and 20,000 jobs, and none within 5 s of the last refresh', async () => {
    const scrape = async (app: Awaited<ReturnType<typeof buildHttpServer>>) => {
      const before = await commandsRun();
      const response = await app.inject({ method: 'GET', url: '/metrics' });
      expect(response.statusCode).toBe(200);
      return { commands: (await commandsRun()) - before, body: response.body };
    };
    const always = await buildHttpServer(windfall, { apiToken: randomToken('api'), metricsRefreshMs: 0 });
    const cached = await buildHttpServer(windfall, { apiToken: randomToken('api') });
    try {
      // every lane holds more than a sample reads
      await addChunks(windfall.queues, 3, 'scrape-a', 1900, 'normal', Date.now() - 60_000);
      await addChunks(windfall.queues, 3, 'scrape-h', 50, 'high', Date.now());
      await addChunks(windfall.queues, 3, 'scrape-l', 50, 'low', Date.now());
      await scrape(always); // warm (scripts loaded)
      const small = await scrape(always);
      await addChunks(windfall.queues, 3, 'scrape-b', 18_000, 'low', Date.now());
      const big = await scrape(always);
      expect(big.body).toMatch(/^windfall_queue_jobs\{queue="shard-3",state="waiting"\} 20000$/m);
      expect(big.body).toMatch(/^windfall_queue_oldest_waiting_seconds\{queue="shard-3"\} (6\d|[7-9]\d)(\.\d+)?$/m);
      expect(big.commands).toBeLessThanOrEqual(1000);
      expect(big.commands).toBe(small.commands);

      // the default interval: the first scrape refreshes, the next ones within 5 s answer the same figures for free
      const first = await scrape(cached);
      expect(first.commands).toBe(big.commands);
      const again = await scrape(cached);
      expect(again.commands).toBe(0);
    } finally {
      await always.close();
      await cached.close();
    }
  }, 120_000);
});
