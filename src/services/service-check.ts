import type pg from 'pg';
import type { Cluster, Redis } from 'ioredis';
import { redactUrl } from '../log/logger.js';
import { retryConflicts } from '../db/retry.js';
import { LATEST_MIGRATION } from '../db/schema-version.js';

/** Redis or PostgreSQL does not answer; the message says which, where, and how to start it. */
export class ServiceUnavailableError extends Error {
  override readonly name = 'ServiceUnavailableError';
  constructor(
    readonly service: 'Redis' | 'PostgreSQL',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

function describeTarget(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || (parsed.protocol.startsWith('redis') ? '6379' : '5432')}`;
  } catch {
    return redactUrl(url);
  }
}

/** Fails with a helpful message when Redis does not answer PING within `timeoutMs`. */
export async function checkRedis(redis: Redis | Cluster, url: string, timeoutMs = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let onError: ((error: Error) => void) | undefined;
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        // a refused connection is known at once: no need to wait for the timeout
        onError = (error: Error) => reject(error);
        redis.once('error', onError);
      }),
    ]);
  } catch (error) {
    throw new ServiceUnavailableError(
      'Redis',
      `Redis at ${describeTarget(url)} does not answer (${(error as Error).message}). Start it (for example \`docker compose up -d redis\`) or set REDIS_URL.`,
      { cause: error },
    );
  } finally {
    clearTimeout(timer);
    if (onError) redis.off('error', onError);
  }
}

/** Fails with a helpful message when PostgreSQL does not answer, or when the schema has not been migrated. */
export async function checkPostgres(
  pool: pg.Pool,
  url: string,
  options: { requireSchema?: boolean } = {},
): Promise<void> {
  try {
    // a connection terminated right then (a backend killed, a restart finishing) is tried again a few times
    await retryConflicts(() => pool.query('select 1'), {
      delaysMs: [100, 300, 1000],
      retryable: (error) => {
        const code = (error as { code?: unknown }).code;
        return typeof code === 'string' && (code.startsWith('57P') || code === '08006' || code === '53300');
      },
    });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === '3D000') {
      throw new ServiceUnavailableError(
        'PostgreSQL',
        `database of DATABASE_URL (${redactUrl(url)}) does not exist: run \`windfall migrate\` first`,
        { cause: error },
      );
    }
    throw new ServiceUnavailableError(
      'PostgreSQL',
      `PostgreSQL at ${describeTarget(url)} does not answer (${(error as Error).message}). Start it (for example \`docker compose up -d postgres\`) or set DATABASE_URL.`,
      { cause: error },
    );
  }
  if (options.requireSchema ?? true) {
    const found = await pool.query<{ ready: boolean; tracked: boolean }>(
      `select to_regclass('reward_batches') is not null as ready, to_regclass('kysely_migration') is not null as tracked`,
    );
    const { ready, tracked } = found.rows[0]!;
    if (!ready) {
      throw new ServiceUnavailableError(
        'PostgreSQL',
        `the database of DATABASE_URL (${redactUrl(url)}) has no Windfall tables: run \`windfall migrate\` first`,
      );
    }
    // (a separate statement: naming a table that does not exist fails the whole statement)
    const current =
      tracked &&
      (await pool.query('select 1 from kysely_migration where name = $1', [LATEST_MIGRATION])).rowCount === 1;
    if (!current) {
      throw new ServiceUnavailableError(
        'PostgreSQL',
        `the database of DATABASE_URL (${redactUrl(url)}) lacks migration ${LATEST_MIGRATION}, which this version of Windfall needs: ` +
          'run `windfall migrate` (it applies only what is missing; processes of the previous version keep working on the migrated database)',
      );
    }
  }
}
