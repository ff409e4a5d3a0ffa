import { Kysely, PostgresAdapter, PostgresDialect, type DialectAdapter } from 'kysely';
import { Migrator, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely/migration';
import type pg from 'pg';
import * as ledger0001 from '../../migrations/0001_ledger.js';
import * as replayLookup0002 from '../../migrations/0002_replay_lookup.js';
import * as chunkUsers0003 from '../../migrations/0003_chunk_users.js';
import * as auditTrail0004 from '../../migrations/0004_audit_trail.js';
import * as batchRevert0005 from '../../migrations/0005_batch_revert.js';
import * as campaignBudgets0006 from '../../migrations/0006_campaign_budgets.js';
import * as batchEvents0007 from '../../migrations/0007_batch_events.js';
import * as fences0008 from '../../migrations/0008_fences.js';
import * as rewardLookup0009 from '../../migrations/0009_reward_lookup.js';
import * as batchCancel0010 from '../../migrations/0010_batch_cancel.js';
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
  '0008_fences': fences0008,
  '0009_reward_lookup': rewardLookup0009,
  '0010_batch_cancel': batchCancel0010,
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

/** The key of the transaction-level advisory lock that serializes migration runs (any constant of our own). */
const MIGRATION_LOCK_KEY = 7_368_716_151_952_001_112n;

/**
 * Kysely's PostgreSQL adapter takes a session-level advisory lock on one connection and releases it with another
 * statement: through a pooler in transaction mode the two can run on different server connections, the lock leaks,
 * and the next `migrate` waits for it for an hour. Here the lock is a transaction-level one taken inside the single
 * transaction that applies every migration (see {@link migrateToLatest}), so this adapter takes none.
 */
class TransactionLockedAdapter extends PostgresAdapter {
  override async acquireMigrationLock(): Promise<void> {}
  override async releaseMigrationLock(): Promise<void> {}
}

/** A dialect that runs everything on one client already inside a transaction, with {@link TransactionLockedAdapter}. */
class OneTransactionDialect extends PostgresDialect {
  override createAdapter(): DialectAdapter {
    return new TransactionLockedAdapter();
  }
}

/**
 * Applies every pending migration over `pool` (left open), all in ONE transaction that first takes a
 * transaction-level advisory lock (`pg_advisory_xact_lock`): concurrent runs are serialized, nothing outlives the
 * transaction (it works through PgBouncer in transaction mode: no session state), and a failing migration leaves
 * nothing half-applied. Idempotent. Throws with the failing migration's name and cause.
 */
export async function migrateToLatest(pool: pg.Pool, schema?: string): Promise<string[]> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('begin');
    await client.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
    // Kysely on this one client, inside this transaction (release() is the transaction's business, not Kysely's);
    // untyped: migrations run before the schema exists
    const inTransaction = {
      connect: async () => ({
        query: (...args: Parameters<pg.PoolClient['query']>) => client.query(...args),
        release: () => undefined,
      }),
    };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations build the schema the types describe
    const db = new Kysely<any>({ dialect: new OneTransactionDialect({ pool: inTransaction as unknown as pg.Pool }) });
    const migrator = new Migrator({
      db,
      provider: new StaticMigrationProvider(),
      disableTransactions: true,
      ...(schema ? { migrationTableSchema: schema } : {}),
    });
    const result: MigrationResultSet = await migrator.migrateToLatest();
    if (result.error) {
      const failed = result.results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
      throw new Error(`migration ${failed} failed: ${(result.error as Error).message ?? String(result.error)}`, {
        cause: result.error,
      });
    }
    await client.query('commit');
    return (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  } catch (error) {
    await client.query('rollback').catch((rollbackError: unknown) => {
      broken = rollbackError as Error;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
