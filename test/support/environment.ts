import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import type { WindfallConfig } from '../../src/config/config.js';
import { loadConfig } from '../../src/config/config.js';
import { quoteIdentifier } from '../../src/db/create-database.js';
import { createLogger } from '../../src/log/logger.js';
import { openWindfall, type Windfall } from '../../src/runtime/windfall.js';
import { stopStrayProcesses } from './cli.js';

/** One test file's own database (copied from the migrated template) and Redis key prefix. */
export interface TestEnvironment {
  readonly databaseUrl: string;
  readonly redisUrl: string;
  readonly prefix: string;
  /** A pool on the test database, for assertions. */
  readonly pool: pg.Pool;
  /** A plain Redis connection, for assertions and for holding locks "elsewhere". */
  readonly redis: Redis;
  /** The configuration a Windfall of this test uses (defaults, this database and prefix, and overrides). */
  config(overrides?: Partial<WindfallConfig>): WindfallConfig;
  /** Environment variables that point a child process at this test's database and prefix. */
  env(extra?: Record<string, string>): NodeJS.ProcessEnv;
  /** Opens a Windfall (with its workers) that is closed after the current test. */
  open(overrides?: Partial<WindfallConfig>): Promise<Windfall>;
  /**
   * Holds a user's lock "elsewhere", as another Windfall process would (a JSON value naming the holder), for `ttlMs`
   * (default 60 s). Resolves with the `acquiredAt` it wrote.
   */
  holdLock(uid: string, owner: string, ttlMs?: number): Promise<string>;
}

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/**
 * Waits until no session is connected to database `name`, for at most 10 s. A pg pool's end() resolves before its
 * connections are closed: a forced drop right after it terminates them mid-close, and the error reaches a pool that
 * a test file opened without an error listener as an uncaught exception that fails the whole run (seen in CI in
 * group-settlement.test.ts). Only a connection left open (a leak) meets the forced drop.
 */
async function sessionsClosed(admin: pg.Client, name: string): Promise<void> {
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    const { rows } = await admin.query<{ sessions: number }>(
      'select count(*)::int as sessions from pg_stat_activity where datname = $1',
      [name],
    );
    if (rows[0]!.sessions === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Gives the calling test file an isolated database and key prefix, created before its tests and removed after
 * (set KEEP_TEST_DATABASES=1 to keep the database for inspection).
 */
export function useTestEnvironment(): TestEnvironment {
  const id = randomBytes(5).toString('hex');
  const name = `windfall_test_${id}`;
  const prefix = `wft-${id}`;
  const serverUrl = inject('databaseUrl');
  const redisUrl = inject('redisUrl');
  const databaseUrl = withDatabase(serverUrl, name);
  const opened: Windfall[] = [];
  let pool: pg.Pool | undefined;
  let redis: Redis | undefined;

  beforeAll(async () => {
    const admin = new pg.Client({ connectionString: withDatabase(serverUrl, 'postgres') });
    await admin.connect();
    try {
      await admin.query(
        `create database ${quoteIdentifier(name)} template ${quoteIdentifier(inject('templateDatabase'))}`,
      );
    } finally {
      await admin.end();
    }
    pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
    // pg-pool's end() resolves before its clients' connections are closed: the `drop database … with (force)` below
    // can then terminate one of them, and an idle client's error would reach a pool without a listener (an uncaught
    // exception that fails the whole run). A test's own pool losing an idle connection is not a test failure.
    pool.on('error', () => undefined);
    redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  });

  afterEach(async () => {
    // every test stops the workers it started: a later test must not find them consuming its jobs
    for (const windfall of opened.splice(0)) await windfall.close();
  });

  afterAll(async () => {
    const strays = await stopStrayProcesses();
    if (strays.length > 0) {
      // graphile-worker's habit: a test that leaves workers running is a failing test
      throw new Error(
        `tests of this file left ${strays.length} process(es) running (now killed): ${strays.join('; ')}`,
      );
    }
  });

  afterAll(async () => {
    await pool?.end();
    if (redis) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== '0');
      redis.disconnect();
    }
    if (!process.env['KEEP_TEST_DATABASES']) {
      const admin = new pg.Client({ connectionString: withDatabase(serverUrl, 'postgres') });
      await admin.connect();
      try {
        await sessionsClosed(admin, name);
        await admin.query(`drop database if exists ${quoteIdentifier(name)} with (force)`);
      } finally {
        await admin.end();
      }
    }
  });

  const config = (overrides: Partial<WindfallConfig> = {}): WindfallConfig =>
    loadConfig(
      { REDIS_URL: redisUrl, DATABASE_URL: databaseUrl, WINDFALL_PREFIX: prefix, LOG_LEVEL: 'warn' },
      overrides,
    );

  return {
    databaseUrl,
    redisUrl,
    prefix,
    get pool() {
      if (!pool) throw new Error('the test environment is not ready (use it inside tests or hooks)');
      return pool;
    },
    get redis() {
      if (!redis) throw new Error('the test environment is not ready (use it inside tests or hooks)');
      return redis;
    },
    config,
    env(extra = {}) {
      const env: NodeJS.ProcessEnv = {};
      for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WINDFALL_')) env[key] = value;
      return {
        ...env,
        REDIS_URL: redisUrl,
        DATABASE_URL: databaseUrl,
        WINDFALL_PREFIX: prefix,
        LOG_LEVEL: 'warn',
        ...extra,
      };
    },
    async open(overrides = {}) {
      const windfall = await openWindfall(config(overrides), createLogger(config(overrides).logLevel));
      opened.push(windfall);
      return windfall;
    },
    async holdLock(uid, owner, ttlMs = 60_000) {
      const acquiredAt = new Date().toISOString();
      await this.redis.set(
        `${prefix}:lock:${uid}`,
        JSON.stringify({ owner, acquiredAt, token: 'held-elsewhere' }),
        'PX',
        ttlMs,
      );
      return acquiredAt;
    },
  };
}
