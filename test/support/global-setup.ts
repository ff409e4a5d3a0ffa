import type { TestProject } from 'vitest/node';
import { Redis } from 'ioredis';
import pg from 'pg';
import { connectDatabase } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { databaseNameOf, ensureDatabaseExists, quoteIdentifier } from '../../src/db/create-database.js';
import { redactUrl, scrubSecrets } from '../../src/log/logger.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    /** Server URL without a database name part that matters: tests create their own databases. */
    databaseUrl: string;
    templateDatabase: string;
  }
}

const LOCAL_REDIS = 'redis://127.0.0.1:6379';
const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';

async function redisAnswers(url: string): Promise<boolean> {
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 10_000,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/** Whether PostgreSQL answers at `url`, and if not, why (the driver's message, without the URL's password). */
async function postgresAnswers(
  url: string,
): Promise<{ ok: true } | { ok: false; code: string | undefined; reason: string }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('select 1');
    return { ok: true };
  } catch (error) {
    return { ok: false, code: (error as { code?: string }).code, reason: scrubSecrets((error as Error).message) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * PostgreSQL at DATABASE_URL: answers, or answers but lacks the named database — created then, as `windfall
 * migrate` does (the tests only need the server: each file makes its own database from a template).
 */
async function preparePostgres(url: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  const first = await postgresAnswers(url);
  if (first.ok || first.code !== '3D000') return first;
  try {
    await ensureDatabaseExists(url);
  } catch (error) {
    throw new Error(
      `tests need PostgreSQL: the server at DATABASE_URL (${redactUrl(url)}) answers, but its database ${JSON.stringify(databaseNameOf(url))} does not exist ` +
        `and could not be created (${scrubSecrets((error as Error).message)}). Create it, or name an existing database in DATABASE_URL.`,
    );
  }
  return postgresAnswers(url);
}

async function dockerAvailable(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds Redis and PostgreSQL for the tests: REDIS_URL / DATABASE_URL when set, else the local services when they
 * answer, else containers (testcontainers) when Docker runs; otherwise fails saying how to provide them.
 * Then builds a migrated template database that every test file copies.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: (() => Promise<unknown>)[] = [];
  let redisUrl = process.env['REDIS_URL'] ?? LOCAL_REDIS;
  let databaseUrl = process.env['DATABASE_URL'] ?? LOCAL_POSTGRES;
  const redisOk = await redisAnswers(redisUrl);
  const postgres = await preparePostgres(databaseUrl);
  const postgresOk = postgres.ok;
  if (!redisOk || !postgresOk) {
    if (!(await dockerAvailable())) {
      const postgresProblem = postgres.ok
        ? ''
        : `PostgreSQL does not answer at ${redactUrl(databaseUrl)} (${postgres.reason})`;
      throw new Error(
        `tests need Redis and PostgreSQL: ${!redisOk ? `Redis does not answer at ${redactUrl(redisUrl)}` : ''}${!redisOk && !postgresOk ? ' and ' : ''}${postgresProblem}. ` +
          'Set REDIS_URL and DATABASE_URL to running servers, start local ones (redis-server; pg_ctlcluster … start), ' +
          'or run Docker so testcontainers can start them.',
      );
    }
    if (!redisOk) {
      const { RedisContainer } = await import('@testcontainers/redis');
      const container = await new RedisContainer('redis:7-alpine').start();
      stops.push(() => container.stop());
      redisUrl = container.getConnectionUrl();
    }
    if (!postgresOk) {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const container = await new PostgreSqlContainer('postgres:16-alpine').start();
      stops.push(() => container.stop());
      databaseUrl = container.getConnectionUri();
    }
  }

  // one per lane (vitest project): the lanes of one run set up and tear down their templates independently
  const template = `windfall_test_template_${project.name}_${process.pid}`;
  const admin = new pg.Client({ connectionString: withDatabase(databaseUrl, 'postgres') });
  await admin.connect();
  await admin.query(`drop database if exists ${quoteIdentifier(template)}`);
  await admin.query(`create database ${quoteIdentifier(template)}`);
  const database = connectDatabase(withDatabase(databaseUrl, template), { poolSize: 1 });
  await migrateToLatest(database.pool);
  await database.close();

  project.provide('redisUrl', redisUrl);
  project.provide('databaseUrl', databaseUrl);
  project.provide('templateDatabase', template);

  return async () => {
    await admin.query(`drop database if exists ${quoteIdentifier(template)}`).catch(() => undefined);
    await admin.end();
    for (const stop of stops) await stop();
  };
}

export function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}
