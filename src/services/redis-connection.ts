import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';
import type { Logger } from '../log/logger.js';
import { redactUrl } from '../log/logger.js';

/** A Redis connection: one server, or a Redis Cluster (`WINDFALL_REDIS_CLUSTER=true`). */
export type RedisClient = Redis | Cluster;

/** How to reach Redis besides the URL. */
export interface RedisConnectOptions {
  /**
   * Connect as a Redis Cluster client: the URL (and `clusterNodes`) are seed nodes, the rest of the cluster is
   * discovered. Its credentials and TLS (`rediss:`) apply to every node. Default false.
   */
  readonly cluster?: boolean;
  /** More seed nodes (`host:port`) for a cluster, tried when the URL's node does not answer at start-up. */
  readonly clusterNodes?: readonly string[];
}

/** `host:port` → a cluster seed node. */
function seedNode(hostPort: string): ClusterNode {
  const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(hostPort.trim());
  if (!match) throw new Error(`cluster node ${JSON.stringify(hostPort)} is not host:port`);
  return { host: match[1]!, port: Number(match[2]) };
}

/** The connection options a URL carries (credentials, TLS, database) for the nodes of a cluster. */
function nodeOptions(url: string): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
  const parsed = new URL(url);
  return {
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/**
 * Opens an ioredis connection as BullMQ needs it (`maxRetriesPerRequest: null`: commands wait across reconnects
 * instead of failing). Connection errors are logged (without the password) rather than crashing the process.
 */
export function connectRedis(
  url: string,
  logger: Logger,
  name = 'windfall',
  options: RedisConnectOptions = {},
): RedisClient {
  const redis: RedisClient = options.cluster
    ? connectCluster(url, name, options.clusterNodes ?? [])
    : new Redis(url, {
        maxRetriesPerRequest: null,
        enableReadyCheck: true,
        connectionName: name,
        retryStrategy: (times) => Math.min(times * 200, 2000),
      });
  let lastLogged = 0;
  let wasReady = false;
  redis.on('ready', () => {
    wasReady = true;
  });
  redis.on('error', (error: Error) => {
    const now = Date.now();
    // before the first connection, the start-up check reports the problem in plain words
    if (!wasReady) return;
    if (now - lastLogged > 5000) {
      lastLogged = now;
      logger.warn({ err: error, redis: redactUrl(url) }, 'Redis connection error; reconnecting');
    }
  });
  return redis;
}

/**
 * A Redis Cluster client seeded from the URL's node and `extraNodes`. Commands wait across reconnects and slot
 * moves (`maxRetriesPerRequest: null` on every node, as BullMQ needs); the password never appears in errors.
 */
function connectCluster(url: string, name: string, extraNodes: readonly string[]): Cluster {
  const parsed = new URL(url);
  const seeds: ClusterNode[] = [
    { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port || 6379) },
    ...extraNodes.map(seedNode),
  ];
  return new Cluster(seeds, {
    enableReadyCheck: true,
    maxRedirections: 32,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    clusterRetryStrategy: (times) => Math.min(times * 200, 2000),
    redisOptions: {
      ...nodeOptions(url),
      maxRetriesPerRequest: null,
      connectionName: name,
    },
  });
}
