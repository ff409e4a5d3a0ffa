import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';
import type { Logger } from '../log/logger.js';
import { DEFAULT_CONFIG } from '../config/config.js';
import { redactUrl } from '../log/logger.js';

/**
 * A Redis connection: one server (`REDIS_URL`), the primary that Redis Sentinel names (`REDIS_SENTINELS`), or a
 * Redis Cluster (`WINDFALL_REDIS_CLUSTER=true`).
 */
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
  /**
   * Sentinels (`host:port`) to ask for the primary of {@link sentinelName}; the URL's user, password, db and TLS
   * (`rediss:`) then apply to the data nodes and its host and port are ignored. Default none.
   */
  readonly sentinels?: readonly string[];
  /** The master name the sentinels watch. Default `mymaster`. */
  readonly sentinelName?: string;
  /** The sentinels' own password. Default none. */
  readonly sentinelPassword?: string | undefined;
  /**
   * A connection that receives nothing for this long while a command waits for its reply is closed and opened again
   * (ioredis `socketTimeout`; commands waiting are sent again): a peer gone silent without closing the connection is
   * noticed in that time. Longer than BullMQ's longest blocking wait (10 s). Default none.
   */
  readonly silenceMs?: number;
}

/** `host:port` → a cluster seed node or a sentinel. */
function seedNode(hostPort: string): ClusterNode & { host: string; port: number } {
  const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(hostPort.trim());
  if (!match) throw new Error(`node ${JSON.stringify(hostPort)} is not host:port`);
  return { host: match[1]!, port: Number(match[2]) };
}

/**
 * A reply of a primary demoted to replica (a Sentinel failover, or one that came back after a crash and was told to
 * follow the new primary): the connection is on the wrong node.
 */
const DEMOTED_REPLY = /^(READONLY|UNBLOCKED)\b|-READONLY\b/;

/**
 * What a connection through Sentinel does with an error reply (ioredis's `reconnectOnError`): `2` for `READONLY`
 * (also inside a script's error) — reconnect through the sentinels and send the command again, which is safe because
 * a refused write did not run; `1` for `UNBLOCKED` (a blocking command cut short by the demotion) — reconnect and let
 * the caller see the error; `false` for anything else.
 */
export function reactionToDemotion(error: Error): false | 1 | 2 {
  if (!DEMOTED_REPLY.test(error.message)) return false;
  return error.message.startsWith('UNBLOCKED') ? 1 : 2;
}

/** Where a client connects, for logs and messages (never with a password). */
export function describeRedisTarget(url: string, options: RedisConnectOptions = {}): string {
  if (options.sentinels && options.sentinels.length > 0) {
    return `master "${options.sentinelName ?? DEFAULT_CONFIG.redisSentinelName}" of Redis Sentinel ${options.sentinels.join(',')}`;
  }
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || '6379'}`;
  } catch {
    return redactUrl(url);
  }
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

/** ioredis options that notice a silent peer (see {@link RedisConnectOptions.silenceMs}). */
function silence(options: RedisConnectOptions): { socketTimeout?: number } {
  return options.silenceMs !== undefined ? { socketTimeout: options.silenceMs } : {};
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
  const sentinels = options.sentinels ?? [];
  const redis: RedisClient = options.cluster
    ? connectCluster(url, name, options.clusterNodes ?? [], options)
    : sentinels.length > 0
      ? connectThroughSentinels(url, name, sentinels, options, logger)
      : new Redis(url, {
          maxRetriesPerRequest: null,
          enableReadyCheck: true,
          connectionName: name,
          ...silence(options),
          retryStrategy: (times) => Math.min(times * 200, 2000),
        });
  const where = sentinels.length > 0 ? describeRedisTarget(url, options) : redactUrl(url);
  let lastLogged = 0;
  let wasReady = false;
  let primary: string | undefined;
  redis.on('ready', () => {
    wasReady = true;
    if (sentinels.length === 0 || !(redis instanceof Redis)) return;
    // one line per failover and process (BullMQ's duplicates of this connection do not carry this listener)
    const stream = (redis as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream;
    const now = stream?.remoteAddress ? `${stream.remoteAddress}:${stream.remotePort}` : undefined;
    if (now && primary && now !== primary) {
      logger.warn({ redis: where, from: primary, to: now }, 'Redis Sentinel named a new primary; connected to it');
    }
    primary = now ?? primary;
  });
  redis.on('error', (error: Error) => {
    const now = Date.now();
    // before the first connection, the start-up check reports the problem in plain words
    if (!wasReady) return;
    if (now - lastLogged > 5000) {
      lastLogged = now;
      logger.warn({ err: error, redis: where }, 'Redis connection error; reconnecting');
    }
  });
  return redis;
}

/**
 * A client of the primary that Redis Sentinel names for `options.sentinelName`, following its failovers:
 * - each (re)connection asks the sentinels in turn, then checks that the node it reached is a master (the ready
 *   check's ROLE): a demoted primary is left for the next sentinel's answer;
 * - a command that meets a demoted primary (`READONLY`) closes the connection and is sent again on the new primary
 *   (it was refused, not run); a blocking command unblocked by the demotion (`UNBLOCKED`) fails and reconnects;
 * - commands wait across reconnects (`maxRetriesPerRequest: null`, as BullMQ needs); BullMQ's own connections are
 *   `duplicate()`s of this one and behave the same.
 * ioredis's `failoverDetector` (leave a primary on `+switch-master`) stays off: with a killed primary its disconnect
 * lands while the client resolves the master through the sentinels, which ends the client for good (ioredis 5.11:
 * the pending connect rejects and the status becomes `end`): of 3 runs of 300,000 rewards one stayed paused, the
 * others took 55 and 85 s (7.7–10.7 s without it).
 * Without it, a failover that leaves the old primary up moves clients when Sentinel demotes it (it closes their
 * connections), about 11 s after the promotion here.
 * The URL's user, password, db and `rediss:` apply to the data nodes; the sentinels are reached in plain TCP.
 */
function connectThroughSentinels(
  url: string,
  name: string,
  sentinels: readonly string[],
  options: RedisConnectOptions,
  logger: Logger,
): Redis {
  // shared by BullMQ's duplicates of this connection: one line per process and 5 s, not per connection and command
  let lastDemotionLog = 0;
  const parsed = new URL(url);
  const db = /^\/(\d+)$/.exec(parsed.pathname)?.[1];
  const node = nodeOptions(url);
  return new Redis({
    sentinels: sentinels.map(seedNode),
    name: options.sentinelName ?? DEFAULT_CONFIG.redisSentinelName,
    role: 'master',
    ...(options.sentinelPassword !== undefined ? { sentinelPassword: options.sentinelPassword } : {}),
    ...node,
    ...(node.tls ? { enableTLSForSentinelMode: true } : {}),
    ...(db !== undefined ? { db: Number(db) } : {}),
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    connectionName: name,
    ...silence(options),
    retryStrategy: (times) => Math.min(times * 200, 2000),
    // a whole round of sentinels failed: start again soon, at most every 2 s
    sentinelRetryStrategy: (times) => Math.min(times * 200, 2000),
    reconnectOnError: (error) => {
      const reaction = reactionToDemotion(error);
      if (reaction === false) return false;
      if (Date.now() - lastDemotionLog > 5000) {
        lastDemotionLog = Date.now();
        logger.warn(
          { redis: describeRedisTarget(url, options), reply: error.message.split('\n')[0]!.slice(0, 120) },
          'the Redis node answered as a demoted primary: reconnecting through the sentinels',
        );
      }
      return reaction;
    },
  });
}

/**
 * A Redis Cluster client seeded from the URL's node and `extraNodes`. Commands wait across reconnects and slot
 * moves (`maxRetriesPerRequest: null` on every node, as BullMQ needs); the password never appears in errors.
 */
function connectCluster(
  url: string,
  name: string,
  extraNodes: readonly string[],
  options: RedisConnectOptions,
): Cluster {
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
      ...silence(options),
    },
  });
}
