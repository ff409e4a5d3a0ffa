import { Kysely, PostgresDialect } from 'kysely';
import { Migrator, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely/migration';
import type pg from 'pg';
import * as ledger0001 from '../../migrations/0001_ledger.js';
import * as replayLookup0002 from '../../migrations/0002_replay_lookup.js';
import * as chunkUsers0003 from '../../migrations/0003_chunk_users.js';
import * as auditTrail0004 from '../../migrations/0004_audit_trail.js';
import * as batchRevert0005 from '../../migrations/0005_batch_revert.js';
import * as campaignBudgets0006 from '../../migrations/0006_campaign_budgets.js';
import * as batchEvents0007 from '../../migrations/0007_batch_events.js';
import { LATEST_MIGRATION } from './schema-version.js';

/** Every migration, in order. Add new files here; never edit one that has shipped. */
const MIGRATIONS: Record<string, Migration> = {
  '0001_ledger': ledger0001,
  '0002_replay_lookup': replayLookup0002,
  '0003_chunk_users': chunkUsers0003,
  '0004_audit_trail': auditTrail0004,
  '0005_batch_revert': batchRevert0005,
  '0006_campaign_budgets': campaignBudgets0006,
  '0007_batch_events': batchEvents0007,
};

if (Object.keys(MIGRATIONS).at(-1) !== LATEST_MIGRATION) {
  throw new Error(
    `internal: LATEST_MIGRATION (${LATEST_MIGRATION}) is not the last migration (${Object.keys(MIGRATIONS).at(-1)}): update src/db/schema-version.ts`,
  );
}

class StaticMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return MIGRATIONS;
  }
}

/**
 * Applies every pending migration over `pool` (left open). Idempotent; concurrent runs are serialized by Kysely's
 * migration lock (a PostgreSQL advisory lock). Throws with the failing migration's name and cause.
 */
export async function migrateToLatest(pool: pg.Pool, schema?: string): Promise<string[]> {
  // Kysely over the caller's pool; never destroyed here, since destroying it would end the pool. Untyped: migrations
  // run before the schema exists.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations build the schema the types describe
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
  const migrator = new Migrator({
    db,
    provider: new StaticMigrationProvider(),
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const result: MigrationResultSet = await migrator.migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new Error(`migration ${failed} failed: ${(result.error as Error).message ?? String(result.error)}`, {
      cause: result.error,
    });
  }
  return (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
