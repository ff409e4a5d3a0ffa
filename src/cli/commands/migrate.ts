import type { WindfallConfig } from '../../config/config.js';
import { connectDatabase } from '../../db/database.js';
import { databaseNameOf, ensureDatabaseExists } from '../../db/create-database.js';
import type { Logger } from '../../log/logger.js';
import { ServiceUnavailableError } from '../../services/service-check.js';

/** The outcome of `windfall migrate`. */
export interface MigrateReport {
  readonly database: string;
  readonly created: boolean;
  readonly applied: readonly string[];
}

/** Creates the database when missing and applies pending migrations (idempotent, safe to run concurrently). */
export async function migrateDatabase(config: WindfallConfig, logger: Logger): Promise<MigrateReport> {
  const database = databaseNameOf(config.databaseUrl);
  let created: boolean;
  try {
    created = await ensureDatabaseExists(config.databaseUrl);
  } catch (error) {
    throw new ServiceUnavailableError(
      'PostgreSQL',
      `cannot reach PostgreSQL to create database ${database} (${(error as Error).message}). Start it (for example \`docker compose up -d postgres\`) or set DATABASE_URL.`,
      { cause: error },
    );
  }
  const connection = connectDatabase(config.databaseUrl, { poolSize: 2, logger, applicationName: 'windfall-migrate' });
  try {
    // loaded here: Kysely and the migrations are needed by this command only
    const { migrateToLatest } = await import('../../db/migrate.js');
    const applied = await migrateToLatest(connection.pool);
    logger.info({ database, created, applied }, 'migrations applied');
    return { database, created, applied };
  } finally {
    await connection.close();
  }
}
