import { REWARD_POLICY } from '../lock/lock-policy.js';
import { DEFAULT_KEY_PREFIX } from '../lock/user-locks.js';
import { LOG_LEVELS } from '../log/logger.js';
import {
  decimal,
  hostPorts,
  matching,
  onOff,
  oneOf,
  optional,
  secret,
  setting,
  trustedProxies,
  url,
  wholeNumber,
} from './setting.js';

/** Shortest accepted `WINDFALL_WEBHOOK_SECRET`: 32 characters (`openssl rand -hex 32` gives 64). */
export const MIN_WEBHOOK_SECRET_LENGTH = 32;

/**
 * Every setting Windfall reads, in the order the docs list them: the one place a variable's name, default, range and
 * meaning are written. `WindfallConfig`, `DEFAULT_CONFIG`, the known variables, `loadConfig` (and its checks of
 * overrides) and `docs/configuration.md` (`npm run docs:config`) are derived from it. The four
 * `WINDFALL_REWARD_LOCK_*` settings make up `WindfallConfig.rewardLockPolicy`.
 */
export const SETTINGS = {
  redisUrl: setting(url(['redis:', 'rediss:']), {
    env: 'REDIS_URL',
    default: 'redis://127.0.0.1:6379',
    flag: '--redis-url',
    meaning: 'Redis for queues and locks.',
  }),
  redisSentinels: setting(hostPorts({ atLeastOne: true }), {
    env: 'REDIS_SENTINELS',
    default: [],
    meaning:
      "Connect through Redis Sentinel. Every process (workers, `serve`, the CLI) asks the sentinels for the primary of `REDIS_SENTINEL_NAME` at each connection and reconnection, checks that the node it reached is a master, and follows failovers (a command refused by a demoted primary, `READONLY`, is sent again on the new one). `REDIS_URL`'s user, password, db and `rediss:` then apply to the data nodes; its host and port are ignored. Not with `WINDFALL_REDIS_CLUSTER=true`. No sentinel answering gives exit 1 naming the sentinels tried and what each said.",
  }),
  redisSentinelName: setting(
    matching(/^[\x21-\x7e]{1,128}$/, 'the master name the sentinels monitor (1-128 printable characters, no spaces)'),
    {
      env: 'REDIS_SENTINEL_NAME',
      default: 'mymaster',
      meaning: "The master name of the sentinels' `sentinel monitor` line.",
    },
  ),
  redisSentinelPassword: setting(optional(secret()), {
    env: 'REDIS_SENTINEL_PASSWORD',
    default: undefined,
    meaning:
      "The sentinels' own password (their `requirepass`; the data nodes' password is `REDIS_URL`'s). The sentinels are reached in plain TCP, the data nodes with TLS when `REDIS_URL` is `rediss:`.",
  }),
  databaseUrl: setting(url(['postgres:', 'postgresql:']), {
    env: 'DATABASE_URL',
    default: 'postgres://postgres@127.0.0.1:5432/windfall',
    flag: '--database-url',
    meaning: 'PostgreSQL, the ledger; `windfall migrate` creates the database when it is missing.',
  }),
  prefix: setting(matching(/^[A-Za-z0-9_.{}-]{1,64}$/, '1-64 characters of letters, digits, _ . - { } (no colon)'), {
    env: 'WINDFALL_PREFIX',
    default: DEFAULT_KEY_PREFIX,
    flag: '--prefix',
    meaning: "Prefix of every Redis key Windfall writes (queues, locks); two prefixes never see each other's work.",
  }),
  shards: setting(wholeNumber(1, 1024), {
    env: 'WINDFALL_SHARDS',
    default: 8,
    unit: 'queues',
    meaning:
      'Number of shard queues; a user always maps to the same shard. Every producer and worker must agree; a worker refuses to start (exit 2) while open batches have chunks on shards at or above its count, naming them and the count they were staged with.',
  }),
  concurrency: setting(wholeNumber(1, 1024), {
    env: 'WINDFALL_CONCURRENCY',
    default: 4,
    unit: 'transactions',
    flag: 'windfall worker --concurrency',
    meaning:
      'PostgreSQL transactions settling users at once per worker process (one connection each), each of up to `WINDFALL_USERS_PER_TRANSACTION` users; with `WINDFALL_USERS_PER_TRANSACTION=1`, users processed at once. Also the users `WalletService` batch methods process at once. (Was 8 users before group commit; see [CHANGELOG.md](../CHANGELOG.md).)',
  }),
  usersPerTransaction: setting(wholeNumber(1, 1000), {
    env: 'WINDFALL_USERS_PER_TRANSACTION',
    default: 128,
    unit: 'users',
    meaning:
      "Most users one transaction of the worker settles (group commit; 128 was chosen by the bench). Each user's rewards of a chunk are always all in the same transaction; `1` keeps one transaction per user. The trade: a withdrawal waiting on a wallet row of a group waits for the group's statement (tens of ms at 128), and a group waits up to 5 s for a row another transaction holds before it splits.",
  }),
  jobAttempts: setting(wholeNumber(1, 100), {
    env: 'WINDFALL_JOB_ATTEMPTS',
    default: 3,
    unit: 'attempts',
    meaning: 'Attempts of a shard job before its unapplied rewards are dead-lettered.',
  }),
  jobBackoffMs: setting(wholeNumber(0, 3_600_000), {
    env: 'WINDFALL_JOB_BACKOFF_MS',
    default: 1000,
    unit: 'ms',
    meaning: "Wait before a job's second attempt, doubled after each further attempt.",
  }),
  rewardLockRetries: setting(wholeNumber(0, 100), {
    env: 'WINDFALL_REWARD_LOCK_RETRIES',
    default: REWARD_POLICY.retries,
    unit: 'retries',
    meaning:
      "The reward lock policy: attempts to take a busy user's lock after the first; `0` gives up at once (the user's rewards are retried with the job).",
  }),
  rewardLockDelayMs: setting(wholeNumber(1, 3_600_000), {
    env: 'WINDFALL_REWARD_LOCK_DELAY_MS',
    default: REWARD_POLICY.initialDelayMs,
    unit: 'ms',
    meaning: 'The reward lock policy: wait before the first retry of a busy lock.',
  }),
  rewardLockFactor: setting(decimal(1, 10), {
    env: 'WINDFALL_REWARD_LOCK_FACTOR',
    default: REWARD_POLICY.factor,
    meaning: 'The reward lock policy: each later wait is the one before times this.',
  }),
  rewardLockTtlMs: setting(wholeNumber(100, 86_400_000), {
    env: 'WINDFALL_REWARD_LOCK_TTL_MS',
    default: REWARD_POLICY.ttlMs,
    unit: 'ms',
    meaning:
      "The reward lock policy: a user's lock expires this long after it is taken, should its holder die without releasing it.",
  }),
  chunkSize: setting(wholeNumber(1, 100_000), {
    env: 'WINDFALL_CHUNK_SIZE',
    default: 2000,
    unit: 'rewards',
    meaning:
      'Rewards per shard job (a user is never split across jobs of a batch); larger chunks mean fewer jobs and fewer round trips, smaller ones less work redone after a crash.',
  }),
  maxBatchRows: setting(wholeNumber(1), {
    env: 'WINDFALL_MAX_BATCH_ROWS',
    default: 10_000_000,
    unit: 'rewards',
    meaning: 'Largest accepted batch.',
  }),
  handOverTimeoutMs: setting(wholeNumber(100, 3_600_000), {
    env: 'WINDFALL_HANDOVER_TIMEOUT_MS',
    default: 30_000,
    unit: 'ms',
    meaning:
      "How long `enqueue` and `POST /v1/batches` wait for Redis to take a recorded batch's jobs before giving up (exit 1 / HTTP 503; enqueueing the same batch again finishes the hand-over).",
  }),
  shutdownTimeoutMs: setting(wholeNumber(0, 3_600_000), {
    env: 'WINDFALL_SHUTDOWN_TIMEOUT_MS',
    default: 30_000,
    unit: 'ms',
    meaning:
      'How long a stopping worker lets in-flight users finish; what is left is put back for another worker (no attempt counted).',
  }),
  jobLockMs: setting(wholeNumber(1000, 600_000), {
    env: 'WINDFALL_JOB_LOCK_MS',
    default: 30_000,
    unit: 'ms',
    meaning:
      "BullMQ job lock: a dead or frozen worker's jobs (and event deliveries) are taken over after about this long.",
  }),
  maxStalledCount: setting(wholeNumber(1), {
    env: 'WINDFALL_MAX_STALLED',
    default: 1000,
    unit: 'take-overs',
    meaning:
      'Times a job may be taken over from a dead worker before BullMQ fails it (the recovery watchdog then re-adds its open work).',
  }),
  redisCluster: setting(onOff(), {
    env: 'WINDFALL_REDIS_CLUSTER',
    default: false,
    meaning:
      'Redis Cluster: connect as a cluster client (`REDIS_URL` is a seed node; its password and `rediss:` apply to every node) and hash-tag queue names (`{shard-N}`). Every producer, worker and CLI command must agree.',
  }),
  redisClusterNodes: setting(hostPorts({ atLeastOne: false }), {
    env: 'WINDFALL_REDIS_CLUSTER_NODES',
    default: [],
    meaning:
      'More Redis Cluster seed nodes besides the node of `REDIS_URL`, tried when it does not answer (with `WINDFALL_REDIS_CLUSTER=true`).',
  }),
  recoveryIntervalMs: setting(wholeNumber(0, 86_400_000), {
    env: 'WINDFALL_RECOVERY_INTERVAL_MS',
    default: 60_000,
    unit: 'ms',
    meaning:
      'How often a worker looks for open work whose job Redis lost or BullMQ failed for good, and re-adds it (one process per prefix scans, every interval; another takes over within two intervals of it stopping); `0` turns it off.',
  }),
  apiToken: setting(optional(secret()), {
    env: 'WINDFALL_API_TOKEN',
    default: undefined,
    meaning:
      'Bearer token of the producer HTTP API; `windfall serve` refuses to start (exit 2) without it, or when `WINDFALL_ADMIN_TOKEN` equals it.',
  }),
  adminToken: setting(optional(secret()), {
    env: 'WINDFALL_ADMIN_TOKEN',
    default: undefined,
    meaning: 'Bearer token (or basic-auth password) of operator routes and the dashboard; without it they answer 401.',
  }),
  httpBodyLimit: setting(wholeNumber(1024, 1024 * 1024 * 1024), {
    env: 'WINDFALL_HTTP_BODY_LIMIT',
    default: 10 * 1024 * 1024,
    unit: 'bytes',
    meaning: 'Largest request body `windfall serve` accepts; larger bodies get 413.',
  }),
  httpStreamLimit: setting(wholeNumber(1024, 2 ** 40), {
    env: 'WINDFALL_HTTP_STREAM_LIMIT',
    default: 4 * 1024 * 1024 * 1024,
    unit: 'bytes',
    meaning:
      'Largest streamed batch (`POST /v1/batches` as `application/x-ndjson`) `windfall serve` reads; larger bodies get 413, nothing recorded. It bounds the time and disk an upload may take, not memory (a streamed batch is staged as it arrives); blank lines count, so a body of newlines cannot run for ever. 4 GiB holds 10,000,000 rewards (`WINDFALL_MAX_BATCH_ROWS`) of up to 429 bytes a line.',
  }),
  webhookUrl: setting(optional(url(['http:', 'https:'])), {
    env: 'WINDFALL_WEBHOOK_URL',
    default: undefined,
    meaning:
      'Where signed batch events are POSTed (credentials in the URL are sent as basic auth); unset: no event is recorded or sent. Give it to every process that settles or reverts batches: workers, `windfall serve`, the shell running `windfall batch revert`. Needs `WINDFALL_WEBHOOK_SECRET`.',
  }),
  webhookSecret: setting(
    optional(
      secret(
        MIN_WEBHOOK_SECRET_LENGTH,
        ' (a short key can be guessed offline from one signed event). Generate one with `openssl rand -hex 32` and give it to the receiver too',
      ),
    ),
    {
      env: 'WINDFALL_WEBHOOK_SECRET',
      default: undefined,
      meaning:
        'The HMAC-SHA256 key of the `Windfall-Signature` header; required with `WINDFALL_WEBHOOK_URL` (`openssl rand -hex 32`); redacted in logs.',
    },
  ),
  trustProxy: setting(trustedProxies(), {
    env: 'WINDFALL_TRUST_PROXY',
    default: false,
    meaning:
      "Which reverse proxies `windfall serve` believes about the client's address (`X-Forwarded-For`), used for the `http:…@<address>` actor of the audit trail: `false`, none: the socket's peer is the client (anyone can send the header); the proxies' addresses or CIDR ranges (`127.0.0.1`, `10.0.0.0/8,::1`, `loopback`): the address the nearest untrusted hop had; `true`, every hop (only when nothing but the proxy can reach the port). Hop counts are not accepted.",
  }),
  pgSilenceMs: setting(wholeNumber(1000, 3_600_000), {
    env: 'WINDFALL_PG_SILENCE_MS',
    default: 20_000,
    unit: 'ms',
    meaning:
      "A worker's PostgreSQL statement still without an answer this long past its own server-side limits (its lock wait) counts its connection as silent: the connection is dropped with every one opened before it, the worker pauses its use of PostgreSQL (one warning), and the work runs again on a new connection. `windfall serve`'s statements get this long past a minute: the request caught is answered 503 and the next ones use new connections.",
  }),
  redisSilenceMs: setting(wholeNumber(12_000, 3_600_000), {
    env: 'WINDFALL_REDIS_SILENCE_MS',
    default: 20_000,
    unit: 'ms',
    meaning:
      "A Redis connection that receives nothing this long while a command waits for its reply is closed and opened again, and the command sent again (a peer gone silent). At least 12 s: longer than BullMQ's 10 s blocking waits.",
  }),
  logLevel: setting(oneOf(LOG_LEVELS), {
    env: 'LOG_LEVEL',
    default: 'info',
    flag: '--log-level',
    meaning: 'pino level; one-shot CLI commands default to `warn`.',
  }),
} as const;

/** The name of a declared setting. */
export type SettingName = keyof typeof SETTINGS;
