import type { LockPolicy } from '../lock/lock-policy.js';
import { REWARD_POLICY } from '../lock/lock-policy.js';
import { LOG_LEVELS, type LogLevel } from '../log/logger.js';
import { ConfigError } from './config-error.js';
import { parseBoolean, parseDecimal, parseInteger, parseTrustProxy, parseUrl, type TrustProxy } from './env-values.js';

/** Shortest accepted `WINDFALL_WEBHOOK_SECRET`: 32 characters (`openssl rand -hex 32` gives 64). */
export const MIN_WEBHOOK_SECRET_LENGTH = 32;

/** Parses `host:port,host:port` (IPv6 hosts in brackets); empty or absent → none. */
function parseHostPortList(variable: string, raw: string | undefined): readonly string[] {
  if (raw === undefined) return Object.freeze([]);
  const nodes = raw
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  for (const node of nodes) {
    const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(node);
    if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) {
      throw new ConfigError(variable, `expected host:port pairs separated by commas, got ${JSON.stringify(node)}`);
    }
  }
  return Object.freeze(nodes);
}

/** Windfall's resolved configuration: read once, validated, frozen. */
export interface WindfallConfig {
  /** Redis for queues and locks. Env `REDIS_URL`; default `redis://127.0.0.1:6379`. */
  readonly redisUrl: string;
  /** PostgreSQL, the ledger. Env `DATABASE_URL`; default `postgres://postgres@127.0.0.1:5432/windfall`. */
  readonly databaseUrl: string;
  /** Prefix of every Redis key Windfall writes. Env `WINDFALL_PREFIX`; default `windfall`. */
  readonly prefix: string;
  /** Number of shard queues. Env `WINDFALL_SHARDS`; default 8. */
  readonly shards: number;
  /**
   * PostgreSQL transactions settling users at once per worker process, each up to `usersPerTransaction` users (with
   * `usersPerTransaction` = 1: users processed at once). Env `WINDFALL_CONCURRENCY`; default 4.
   */
  readonly concurrency: number;
  /**
   * Most users settled by one PostgreSQL transaction of the worker (group commit); each user's rewards of a chunk are
   * always all in the same transaction. 1 = one transaction per user. Env `WINDFALL_USERS_PER_TRANSACTION`; default 128.
   */
  readonly usersPerTransaction: number;
  /** Attempts of a shard job before its unapplied rewards are dead-lettered. Env `WINDFALL_JOB_ATTEMPTS`; default 3. */
  readonly jobAttempts: number;
  /** Wait before a shard job's second attempt, doubled for each later one. Env `WINDFALL_JOB_BACKOFF_MS`; default 1000. */
  readonly jobBackoffMs: number;
  /** The reward lock policy. Env `WINDFALL_REWARD_LOCK_RETRIES` / `_DELAY_MS` / `_FACTOR` / `_TTL_MS`; default 10 / 500 / 1.5 / 60000. */
  readonly rewardLockPolicy: LockPolicy;
  /** Rewards per shard job (a user is never split). Env `WINDFALL_CHUNK_SIZE`; default 2000. */
  readonly chunkSize: number;
  /** Longest accepted batch, in rewards. Env `WINDFALL_MAX_BATCH_ROWS`; default 10000000. */
  readonly maxBatchRows: number;
  /**
   * How long `enqueue` and `POST /v1/batches` wait for Redis to take a recorded batch's jobs before giving up
   * (exit 1 / HTTP 503; enqueueing the batch again finishes the hand-over). Env `WINDFALL_HANDOVER_TIMEOUT_MS`;
   * default 30000.
   */
  readonly handOverTimeoutMs: number;
  /** How long a stopping worker lets in-flight users finish. Env `WINDFALL_SHUTDOWN_TIMEOUT_MS`; default 30000. */
  readonly shutdownTimeoutMs: number;
  /** Times a shard job may be picked up again after its worker died before BullMQ fails it. Env `WINDFALL_MAX_STALLED`; default 1000. */
  readonly maxStalledCount: number;
  /** BullMQ job lock: a dead worker's jobs are taken over after about this long. Env `WINDFALL_JOB_LOCK_MS`; default 30000. */
  readonly jobLockMs: number;
  /** Wrap shard queue names in `{…}` so BullMQ works on Redis Cluster. Env `WINDFALL_REDIS_CLUSTER`; default false. */
  readonly redisCluster: boolean;
  /**
   * More Redis Cluster seed nodes (`host:port,host:port`) besides the node of `REDIS_URL`, used when
   * `redisCluster` is on. Env `WINDFALL_REDIS_CLUSTER_NODES`; default none.
   */
  readonly redisClusterNodes: readonly string[];
  /**
   * How often a worker process looks for open work whose job Redis lost or BullMQ failed for good, and re-adds it
   * (one process per prefix per interval). 0 turns it off. Env `WINDFALL_RECOVERY_INTERVAL_MS`; default 60000.
   */
  readonly recoveryIntervalMs: number;
  /** Bearer token of the producer HTTP API. Env `WINDFALL_API_TOKEN`; no default. */
  readonly apiToken: string | undefined;
  /** Bearer token (or basic-auth password) of operator routes and the dashboard. Env `WINDFALL_ADMIN_TOKEN`; no default. */
  readonly adminToken: string | undefined;
  /**
   * Where signed batch events (`batch.completed`, `batch.reverted`) are POSTed; http or https. Unset: no event is
   * recorded or sent. Every process that settles or reverts batches needs it (workers, `windfall serve`, the CLI
   * running `batch revert`). Env `WINDFALL_WEBHOOK_URL`; no default.
   */
  readonly webhookUrl: string | undefined;
  /**
   * HMAC-SHA256 key of the `Windfall-Signature` header; required with `webhookUrl`, at least
   * {@link MIN_WEBHOOK_SECRET_LENGTH} (32) characters. Env `WINDFALL_WEBHOOK_SECRET`; no default.
   */
  readonly webhookSecret: string | undefined;
  /**
   * Which reverse proxies `windfall serve` believes about the client's address (`X-Forwarded-For`), for the
   * `http:…@<address>` audit actor: `false` none (the socket's peer is the client), `true` every one, or the
   * proxies' addresses and CIDR ranges (and `loopback`, `linklocal`, `uniquelocal`). Env `WINDFALL_TRUST_PROXY`;
   * default false.
   */
  readonly trustProxy: TrustProxy;
  /**
   * A worker's PostgreSQL statement still without an answer this long past its own server-side limits (its lock
   * wait) counts its connection as silent: the connection is dropped with every one opened before it, the worker
   * pauses its use of PostgreSQL (one warning), and the work runs again on a new connection. Env
   * `WINDFALL_PG_SILENCE_MS`; default 20000.
   */
  readonly pgSilenceMs: number;
  /** Largest HTTP request body `windfall serve` accepts, in bytes (larger → 413). Env `WINDFALL_HTTP_BODY_LIMIT`; default 10485760 (10 MiB). */
  readonly httpBodyLimit: number;
  /** pino level. Env `LOG_LEVEL`; default `info`. */
  readonly logLevel: LogLevel;
}

/** Defaults of every setting, as the contract fixes them. */
export const DEFAULT_CONFIG = {
  redisUrl: 'redis://127.0.0.1:6379',
  databaseUrl: 'postgres://postgres@127.0.0.1:5432/windfall',
  prefix: 'windfall',
  shards: 8,
  concurrency: 4,
  usersPerTransaction: 128,
  jobAttempts: 3,
  jobBackoffMs: 1000,
  rewardLockPolicy: REWARD_POLICY,
  chunkSize: 2000,
  maxBatchRows: 10_000_000,
  handOverTimeoutMs: 30_000,
  shutdownTimeoutMs: 30_000,
  maxStalledCount: 1000,
  jobLockMs: 30_000,
  redisCluster: false,
  redisClusterNodes: [],
  recoveryIntervalMs: 60_000,
  apiToken: undefined,
  adminToken: undefined,
  webhookUrl: undefined,
  webhookSecret: undefined,
  trustProxy: false,
  pgSilenceMs: 20_000,
  httpBodyLimit: 10 * 1024 * 1024,
  logLevel: 'info',
} as const satisfies WindfallConfig;

type Env = Readonly<Record<string, string | undefined>>;

/** Every `WINDFALL_*` variable Windfall reads; {@link unknownSettings} reports the others (likely typos). */
const KNOWN_VARIABLES = new Set([
  'WINDFALL_PREFIX',
  'WINDFALL_SHARDS',
  'WINDFALL_CONCURRENCY',
  'WINDFALL_USERS_PER_TRANSACTION',
  'WINDFALL_JOB_ATTEMPTS',
  'WINDFALL_JOB_BACKOFF_MS',
  'WINDFALL_REWARD_LOCK_RETRIES',
  'WINDFALL_REWARD_LOCK_DELAY_MS',
  'WINDFALL_REWARD_LOCK_FACTOR',
  'WINDFALL_REWARD_LOCK_TTL_MS',
  'WINDFALL_CHUNK_SIZE',
  'WINDFALL_MAX_BATCH_ROWS',
  'WINDFALL_HANDOVER_TIMEOUT_MS',
  'WINDFALL_SHUTDOWN_TIMEOUT_MS',
  'WINDFALL_MAX_STALLED',
  'WINDFALL_JOB_LOCK_MS',
  'WINDFALL_REDIS_CLUSTER',
  'WINDFALL_REDIS_CLUSTER_NODES',
  'WINDFALL_RECOVERY_INTERVAL_MS',
  'WINDFALL_API_TOKEN',
  'WINDFALL_ADMIN_TOKEN',
  'WINDFALL_HTTP_BODY_LIMIT',
  'WINDFALL_WEBHOOK_URL',
  'WINDFALL_WEBHOOK_SECRET',
  'WINDFALL_TRUST_PROXY',
  'WINDFALL_PG_SILENCE_MS',
]);

/** Names of `WINDFALL_*` variables in `env` that Windfall does not read: worth a warning, as they are likely typos. */
export function unknownSettings(env: Env = process.env): string[] {
  return Object.keys(env).filter((name) => name.startsWith('WINDFALL_') && !KNOWN_VARIABLES.has(name));
}

/**
 * Reads the configuration from `env` (default `process.env`); values in `overrides` (CLI flags) win.
 * Throws {@link ConfigError} naming the variable on a malformed value (a non-number, a negative count, a bad URL).
 */
export function loadConfig(env: Env = process.env, overrides: Partial<WindfallConfig> = {}): WindfallConfig {
  const read = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value === '' ? undefined : value;
  };
  const integer = (name: string, fallback: number, min: number, max?: number): number => {
    const raw = read(name);
    return raw === undefined ? fallback : parseInteger(name, raw, min, max);
  };

  const prefix = read('WINDFALL_PREFIX') ?? DEFAULT_CONFIG.prefix;
  if (!/^[A-Za-z0-9_.{}-]{1,64}$/.test(prefix)) {
    throw new ConfigError('WINDFALL_PREFIX', 'expected 1-64 characters of letters, digits, _ . - { } (no colon)');
  }
  const logLevel = read('LOG_LEVEL') ?? DEFAULT_CONFIG.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);
  }
  const webhookUrlRaw = read('WINDFALL_WEBHOOK_URL');
  const webhookUrl =
    webhookUrlRaw === undefined ? undefined : parseUrl('WINDFALL_WEBHOOK_URL', webhookUrlRaw, ['http:', 'https:']);
  const webhookSecret = read('WINDFALL_WEBHOOK_SECRET');
  if (webhookUrl !== undefined && webhookSecret === undefined) {
    throw new ConfigError(
      'WINDFALL_WEBHOOK_SECRET',
      'is required when WINDFALL_WEBHOOK_URL is set: events are signed with it (Windfall-Signature). Set a long random secret shared with the receiver, or unset WINDFALL_WEBHOOK_URL to send no events',
    );
  }
  if (webhookSecret !== undefined && webhookSecret.length < MIN_WEBHOOK_SECRET_LENGTH) {
    throw new ConfigError(
      'WINDFALL_WEBHOOK_SECRET',
      `is ${webhookSecret.length} characters long; it needs at least ${MIN_WEBHOOK_SECRET_LENGTH} (a short key can be guessed offline from one signed event). Generate one with \`openssl rand -hex 32\` and give it to the receiver too`,
    );
  }
  const trustProxyRaw = read('WINDFALL_TRUST_PROXY');
  const lockFactorRaw = read('WINDFALL_REWARD_LOCK_FACTOR');
  const clusterRaw = read('WINDFALL_REDIS_CLUSTER');

  const config: WindfallConfig = {
    redisUrl: parseUrl('REDIS_URL', read('REDIS_URL') ?? DEFAULT_CONFIG.redisUrl, ['redis:', 'rediss:']),
    databaseUrl: parseUrl('DATABASE_URL', read('DATABASE_URL') ?? DEFAULT_CONFIG.databaseUrl, [
      'postgres:',
      'postgresql:',
    ]),
    prefix,
    shards: integer('WINDFALL_SHARDS', DEFAULT_CONFIG.shards, 1, 1024),
    concurrency: integer('WINDFALL_CONCURRENCY', DEFAULT_CONFIG.concurrency, 1, 1024),
    usersPerTransaction: integer('WINDFALL_USERS_PER_TRANSACTION', DEFAULT_CONFIG.usersPerTransaction, 1, 1000),
    jobAttempts: integer('WINDFALL_JOB_ATTEMPTS', DEFAULT_CONFIG.jobAttempts, 1, 100),
    jobBackoffMs: integer('WINDFALL_JOB_BACKOFF_MS', DEFAULT_CONFIG.jobBackoffMs, 0, 3_600_000),
    rewardLockPolicy: Object.freeze({
      name: 'reward',
      retries: integer('WINDFALL_REWARD_LOCK_RETRIES', REWARD_POLICY.retries, 0, 100),
      initialDelayMs: integer('WINDFALL_REWARD_LOCK_DELAY_MS', REWARD_POLICY.initialDelayMs, 1, 3_600_000),
      factor:
        lockFactorRaw === undefined
          ? REWARD_POLICY.factor
          : parseDecimal('WINDFALL_REWARD_LOCK_FACTOR', lockFactorRaw, 1, 10),
      ttlMs: integer('WINDFALL_REWARD_LOCK_TTL_MS', REWARD_POLICY.ttlMs, 100, 86_400_000),
    }),
    chunkSize: integer('WINDFALL_CHUNK_SIZE', DEFAULT_CONFIG.chunkSize, 1, 100_000),
    maxBatchRows: integer('WINDFALL_MAX_BATCH_ROWS', DEFAULT_CONFIG.maxBatchRows, 1),
    handOverTimeoutMs: integer('WINDFALL_HANDOVER_TIMEOUT_MS', DEFAULT_CONFIG.handOverTimeoutMs, 100, 3_600_000),
    shutdownTimeoutMs: integer('WINDFALL_SHUTDOWN_TIMEOUT_MS', DEFAULT_CONFIG.shutdownTimeoutMs, 0, 3_600_000),
    maxStalledCount: integer('WINDFALL_MAX_STALLED', DEFAULT_CONFIG.maxStalledCount, 1),
    jobLockMs: integer('WINDFALL_JOB_LOCK_MS', DEFAULT_CONFIG.jobLockMs, 1000, 600_000),
    redisCluster: clusterRaw === undefined ? false : parseBoolean('WINDFALL_REDIS_CLUSTER', clusterRaw),
    redisClusterNodes: parseHostPortList('WINDFALL_REDIS_CLUSTER_NODES', read('WINDFALL_REDIS_CLUSTER_NODES')),
    recoveryIntervalMs: integer('WINDFALL_RECOVERY_INTERVAL_MS', DEFAULT_CONFIG.recoveryIntervalMs, 0, 86_400_000),
    apiToken: read('WINDFALL_API_TOKEN'),
    adminToken: read('WINDFALL_ADMIN_TOKEN'),
    webhookUrl,
    webhookSecret,
    trustProxy: trustProxyRaw === undefined ? false : parseTrustProxy('WINDFALL_TRUST_PROXY', trustProxyRaw),
    pgSilenceMs: integer('WINDFALL_PG_SILENCE_MS', DEFAULT_CONFIG.pgSilenceMs, 1000, 3_600_000),
    httpBodyLimit: integer('WINDFALL_HTTP_BODY_LIMIT', DEFAULT_CONFIG.httpBodyLimit, 1024, 1024 * 1024 * 1024),
    logLevel: logLevel as LogLevel,
    ...overrides,
  };
  return Object.freeze(config);
}
