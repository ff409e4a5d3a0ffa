import type pg from 'pg';
import { beginDeciding } from './fences.js';
import { isSilentConnection } from './silent-connections.js';

/**
 * Runs `work` in one transaction on a client of `pool`: committed when it resolves, rolled back when it throws (the
 * error is rethrown). The client goes back to the pool either way. Read committed whatever the server's default (each
 * statement sees what committed before it began, e.g. after waiting for a fence), and ended by the server when this
 * process stops between its statements for 30 s (a frozen process never holds its locks for ever).
 */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let result: T;
  try {
    await beginDeciding(client);
    result = await work(client);
    await client.query('commit');
  } catch (error) {
    // a connection that failed or went silent cannot roll back: it is dropped (the server ends the transaction)
    let broken: Error | undefined;
    if (isSilentConnection(error)) broken = error as Error;
    else
      await client.query('rollback').catch((rollbackError: unknown) => {
        broken = rollbackError as Error;
      });
    client.release(broken);
    throw error;
  }
  client.release();
  return result;
}
