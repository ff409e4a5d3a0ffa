import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import type { TestEnvironment } from './environment.js';
import { resilientPool } from './redis-servers.js';

/** The pools of a fault test that terminates backends: one on the server (`postgres`), one on the test's database. */
export interface FaultPools {
  /** On the server's `postgres` database: terminates backends, alters the test database. */
  readonly admin: pg.Pool;
  /** On the test's database, for assertions. */
  readonly pool: pg.Pool;
  /** The test database's name. */
  database(): string;
}

/**
 * Opens the calling file's fault pools before its tests and closes them after (`beforeClose` runs first). They
 * survive their connections being terminated: terminating backends kills their idle connections too.
 */
export function useFaultPools(env: TestEnvironment, beforeClose?: (pools: FaultPools) => Promise<unknown>): FaultPools {
  let admin: pg.Pool | undefined;
  let pool: pg.Pool | undefined;
  const pools: FaultPools = {
    get admin() {
      if (!admin) throw new Error('fault pools are open inside tests and hooks only');
      return admin;
    },
    get pool() {
      if (!pool) throw new Error('fault pools are open inside tests and hooks only');
      return pool;
    },
    database: () => new URL(env.databaseUrl).pathname.slice(1),
  };
  beforeAll(() => {
    const server = new URL(env.databaseUrl);
    server.pathname = '/postgres';
    admin = resilientPool(server.toString(), 1);
    pool = resilientPool(env.databaseUrl, 2);
  });
  afterAll(async () => {
    await beforeClose?.(pools).catch(() => undefined);
    await admin?.end();
    await pool?.end();
  });
  return pools;
}
