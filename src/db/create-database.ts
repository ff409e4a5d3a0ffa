import pg from 'pg';
import { isDatabaseCreatedMeanwhile } from './pg-errors.js';

/** The database name in a PostgreSQL URL (`windfall` in `postgres://host/windfall`). */
export function databaseNameOf(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!name) throw new Error('DATABASE_URL names no database (expected postgres://user@host:5432/<database>)');
  return name;
}

/** Quotes an identifier for PostgreSQL DDL. */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Creates the database named by `url` when it is missing, connecting to the server's `postgres` database.
 * Safe when several processes do it at once. Returns true when it created the database.
 */
export async function ensureDatabaseExists(url: string): Promise<boolean> {
  const name = databaseNameOf(url);
  const maintenance = new URL(url);
  maintenance.pathname = '/postgres';
  const client = new pg.Client({ connectionString: maintenance.toString(), application_name: 'windfall-migrate' });
  await client.connect();
  try {
    const found = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (found.rowCount) return false;
    try {
      await client.query(`create database ${quoteIdentifier(name)}`);
      return true;
    } catch (error) {
      // another process created it first
      if (isDatabaseCreatedMeanwhile(error)) return false;
      throw error;
    }
  } finally {
    await client.end();
  }
}
