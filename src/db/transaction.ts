import type pg from 'pg';
import { beginDeciding } from './fences.js';

/**
 * Runs `work` in one transaction on a client of `pool`: committed when it resolves, rolled back when it throws (the
 * error is rethrown). The client goes back to the pool either way. Read committed whatever the server's default (each
 * statement sees what committed before it began, e.g. after waiting for a fence), and ended by the server when this
 * process stops between its statements for 30 s (a frozen process never holds its locks for ever).
 */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await beginDeciding(client);
    const result = await work(client);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
