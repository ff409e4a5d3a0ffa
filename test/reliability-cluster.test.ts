import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../src/config/config-error.js';
import { loadConfig, unknownSettings } from '../src/config/config.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import { resumeOpenWork } from '../src/reconcile/resume-work.js';
import { useTestEnvironment } from './support/environment.js';
import { balances, rewardRows, waitForBatchDone } from './support/batches.js';
import {
  redisCli,
  startRedisCluster,
  startWindfall,
  waitForStarted,
  type RedisClusterServers,
  type WindfallProcess,
} from './support/redis-servers.js';

const env = useTestEnvironment();
let cluster: RedisClusterServers;
const workers: WindfallProcess[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster();
});
afterAll(async () => {
  for (const worker of workers) await worker.kill9();
  await cluster?.destroy();
});

describe('scale-out on a 3-master Redis Cluster', () => {
  it('hash-tagged shard queues spread over the masters; two worker processes share them; every balance exact', async () => {
    const settings = {
      redisUrl: cluster.url,
      redisCluster: true,
      redisClusterNodes: cluster.otherNodes,
      chunkSize: 100,
    };
    const producer = await env.open(settings);
    const rows = rewardRows(6000, (n) => ({
      rewardId: `cl-${n}`,
      uid: `cl-u${(n * 17) % 1200}`,
      amount: 1 + (n % 31),
    }));
    const expected = new Map<string, bigint>();
    for (const row of rows) expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
    const enqueued = await producer.producer.enqueueRewards(rows, { batchId: 'cluster-batch' });
    expect(enqueued.chunks).toBeGreaterThan(8);

    // every job is where the recovery path looks for it (one pipeline per shard queue, within its hash slot)
    const resumed = await resumeOpenWork(env.pool, producer.queues, { minAgeMs: 0 });
    expect(resumed).toMatchObject({ checkedChunks: enqueued.chunks, chunks: [] });

    // the shard queues live on different masters
    const holders = await Promise.all(
      cluster.ports.map(
        async (port) =>
          (await redisCli(port, ['--scan', '--pattern', `${env.prefix}:{shard-*}:meta`])).output
            .trim()
            .split('\n')
            .filter(Boolean).length,
      ),
    );
    expect(holders.reduce((a, b) => a + b, 0)).toBe(8);
    expect(holders.filter((count) => count > 0).length).toBeGreaterThanOrEqual(2);

    const workerEnv = env.env({
      REDIS_URL: cluster.url,
      WINDFALL_REDIS_CLUSTER: 'true',
      WINDFALL_REDIS_CLUSTER_NODES: cluster.otherNodes.join(','),
      WINDFALL_CONCURRENCY: '4',
      LOG_LEVEL: 'debug',
    });
    // both processes are up before any job can be taken, so each takes some (a slow start cannot leave one idle)
    const shardQueues = Array.from({ length: 8 }, (_, shard) => producer.queues.shard(shard));
    await Promise.all(shardQueues.map((queue) => queue.pause()));
    workers.push(startWindfall(['worker'], workerEnv), startWindfall(['worker'], workerEnv));
    await waitForStarted(workers);
    await Promise.all(shardQueues.map((queue) => queue.resume()));
    const report = await waitForBatchDone(env.pool, 'cluster-batch', 120_000).catch((error: Error) => {
      throw new Error(`${error.message}\n${workers.map((w) => w.output().slice(-2000)).join('\n---\n')}`);
    });
    expect(report).toMatchObject({ total: 6000, applied: 6000, duplicate: 0, deadLettered: 0, status: 'completed' });
    const done = workers.splice(0);
    expect(await Promise.all(done.map((worker) => worker.stop()))).toEqual([0, 0]);
    // both processes took jobs
    for (const worker of done) expect(worker.output()).toContain('"msg":"job done"');
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 180_000);
});

describe('cluster and recovery settings', () => {
  it('reads WINDFALL_REDIS_CLUSTER_NODES and WINDFALL_RECOVERY_INTERVAL_MS, and refuses malformed values naming the variable', () => {
    const config = loadConfig({
      WINDFALL_REDIS_CLUSTER: 'yes',
      WINDFALL_REDIS_CLUSTER_NODES: ' 10.0.0.2:6379, node-3.internal:7000 ,[::1]:6380',
      WINDFALL_RECOVERY_INTERVAL_MS: '0',
    });
    expect(config).toMatchObject({
      redisCluster: true,
      redisClusterNodes: ['10.0.0.2:6379', 'node-3.internal:7000', '[::1]:6380'],
      recoveryIntervalMs: 0,
    });
    expect(loadConfig({})).toMatchObject({ redisCluster: false, redisClusterNodes: [], recoveryIntervalMs: 60_000 });
    expect(() => loadConfig({ WINDFALL_REDIS_CLUSTER_NODES: 'node-2' })).toThrow(ConfigError);
    expect(() => loadConfig({ WINDFALL_REDIS_CLUSTER_NODES: 'node-2:99999' })).toThrow(/WINDFALL_REDIS_CLUSTER_NODES/);
    expect(() => loadConfig({ WINDFALL_RECOVERY_INTERVAL_MS: '-1' })).toThrow(/WINDFALL_RECOVERY_INTERVAL_MS/);
    expect(unknownSettings({ WINDFALL_REDIS_CLUSTER_NODES: 'a:1', WINDFALL_RECOVERY_INTERVAL_MS: '5' })).toEqual([]);
  });
});
