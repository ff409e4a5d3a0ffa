/**
 * Redis servers a test starts for itself (never the shared 127.0.0.1:6379): a single server with or without AOF,
 * and a 3-master Redis Cluster, all on random loopback ports above 20000. The tools live in bench/soak/fault-kit.ts
 * so the soak script can use them too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { portIsFree, redisCli, startRedisServer, waitFor, type RedisServer } from '../../bench/soak/fault-kit.js';

export {
  portIsFree,
  queryRetrying,
  randomPort,
  redisCli,
  resilientPool,
  runWindfall,
  sleep,
  startRedisServer,
  startWindfall,
  terminateBackends,
  waitFor,
  waitForStarted,
  type RedisServer,
  type WindfallProcess,
} from '../../bench/soak/fault-kit.js';

/** A Redis Cluster of three masters (no replicas) started by a test. */
export interface RedisClusterServers {
  readonly ports: readonly number[];
  /** A seed node's URL (`redis://127.0.0.1:P1`); the client discovers the others. */
  readonly url: string;
  /** The other nodes as `host:port`, for `WINDFALL_REDIS_CLUSTER_NODES`. */
  readonly otherNodes: readonly string[];
  readonly nodes: readonly RedisServer[];
  destroy(): Promise<void>;
}

/** Three consecutive free ports whose cluster bus ports (port + 10000) are free too. */
async function clusterPorts(): Promise<number[]> {
  for (let tries = 0; tries < 200; tries += 1) {
    const first = 20_001 + Math.floor(Math.random() * 35_000);
    const ports = [first, first + 1, first + 2];
    let free = true;
    for (const port of ports) free = free && (await portIsFree(port)) && (await portIsFree(port + 10_000));
    if (free) return ports;
  }
  throw new Error('no free ports for a Redis Cluster');
}

/**
 * Starts three `redis-server --cluster-enabled yes` nodes and joins them with
 * `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`; resolves once every node says cluster_state:ok.
 */
export async function startRedisCluster(): Promise<RedisClusterServers> {
  const ports = await clusterPorts();
  const dir = mkdtempSync(join(tmpdir(), 'windfall-cluster-'));
  const nodes: RedisServer[] = [];
  try {
    for (const port of ports) {
      nodes.push(
        await startRedisServer({
          port,
          aof: true,
          dir: mkdtempSync(join(dir, `node-${port}-`)),
          extraArgs: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            `nodes-${port}.conf`,
            '--cluster-node-timeout',
            '5000',
          ],
        }),
      );
    }
    const created = await redisCli(
      ports[0]!,
      ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'],
      60_000,
    );
    if (created.code !== 0) throw new Error(`redis-cli --cluster create failed: ${created.output}`);
    await waitFor(
      async () => {
        const states = await Promise.all(ports.map((port) => redisCli(port, ['cluster', 'info'])));
        return states.every((state) => state.output.includes('cluster_state:ok'));
      },
      'the cluster to be ready',
      30_000,
      200,
    );
  } catch (error) {
    for (const node of nodes) await node.destroy().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    ports,
    url: `redis://127.0.0.1:${ports[0]}`,
    otherNodes: ports.slice(1).map((port) => `127.0.0.1:${port}`),
    nodes,
    async destroy() {
      for (const node of nodes) await node.destroy().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
