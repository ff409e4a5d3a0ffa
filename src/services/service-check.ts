import type pg from 'pg';
import type { Cluster, Redis } from 'ioredis';
import { DEFAULT_CONFIG } from '../config/config.js';
import { redactUrl } from '../log/logger.js';
import { retryConflicts } from '../db/retry.js';
import { isMissingDatabase, isMomentaryConnectionFault } from '../db/pg-errors.js';
import { LATEST_MIGRATION } from '../db/schema-version.js';
import type { RedisConnectOptions } from './redis-connection.js';
import { WindfallError } from '../errors/windfall-error.js';

/** Redis or PostgreSQL does not answer; the message says which, where, and how to start it. */
export class ServiceUnavailableError extends WindfallError {
  static override readonly code = 'SERVICE_UNAVAILABLE';
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

/**
 * Fails with a helpful message when Redis does not answer PING within `timeoutMs`. With sentinels (`connect`), the
 * message names the sentinels tried and what each said (unreachable, no such master, a refused password).
 */
export async function checkRedis(
  redis: Redis | Cluster,
  url: string,
  timeoutMs = 5000,
  connect: RedisConnectOptions = {},
): Promise<void> {
  const sentinels = connect.sentinels ?? [];
  const sentinelErrors = new Map<string, string>();
  const onSentinelError = (error: Error): void => {
    const found = /sentinel (\S+?)(?: because |\s+successfully)/.exec(error.message);
    sentinelErrors.set(found?.[1] ?? '?', error.message);
  };
  let timer: NodeJS.Timeout | undefined;
  let onError: ((error: Error) => void) | undefined;
  if (sentinels.length > 0) redis.on('sentinelError', onSentinelError);
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
    const reason = (error as Error).message;
    throw new ServiceUnavailableError(
      'Redis',
      sentinels.length > 0
        ? sentinelFailure(sentinels, connect.sentinelName ?? DEFAULT_CONFIG.redisSentinelName, reason, sentinelErrors)
        : `Redis at ${describeTarget(url)} does not answer (${reason}). Start it (for example \`docker compose up -d redis\`) or set REDIS_URL.`,
      { cause: error },
    );
  } finally {
    clearTimeout(timer);
    if (onError) redis.off('error', onError);
    redis.off('sentinelError', onSentinelError);
  }
}

/** What went wrong reaching Redis through Sentinel, in words: which sentinels were tried and what they said. */
function sentinelFailure(
  sentinels: readonly string[],
  masterName: string,
  reason: string,
  sentinelErrors: ReadonlyMap<string, string>,
): string {
  const tried = sentinels.join(', ');
  const said = [...sentinelErrors.values()];
  const subject = `Redis through Sentinel (master "${masterName}"; sentinels tried: ${tried})`;
  // Redis 7 says `ERR No such master with that name`; older sentinels answer null
  if (said.length > 0 && said.every((text) => /No such master|got an invalid reply: null/i.test(text))) {
    return `${subject} does not answer: the sentinels know no master named "${masterName}". Set REDIS_SENTINEL_NAME to the name in their \`sentinel monitor\` line.`;
  }
  if (said.some((text) => /NOAUTH|WRONGPASS|invalid password|Authentication required/i.test(text))) {
    return `${subject} does not answer: a sentinel refused the credentials (${firstLine(said.find((text) => /NOAUTH|WRONGPASS|invalid password|Authentication required/i.test(text))!)}). Set REDIS_SENTINEL_PASSWORD to the sentinels' requirepass.`;
  }
  if (/All sentinels are unreachable/.test(reason)) {
    const detail =
      said.length > 0
        ? [...sentinelErrors]
            .map(([address, text]) => `${address}: ${firstLine(text.replace(/^.*? because /, ''))}`)
            .join('; ')
        : firstLine(reason);
    return `${subject} does not answer: no sentinel gave the primary's address (${detail}). Start the sentinels or set REDIS_SENTINELS.`;
  }
  // the sentinels answered; the primary they named did not (or refused the data nodes' credentials of REDIS_URL)
  return `${subject} does not answer (${firstLine(reason)}). The sentinels answered, the primary they named did not: check it, and the user and password of REDIS_URL.`;
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.slice(0, 300);
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
      retryable: isMomentaryConnectionFault,
    });
  } catch (error) {
    if (isMissingDatabase(error)) {
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
