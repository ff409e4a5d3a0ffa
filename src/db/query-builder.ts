import type { Compilable, Kysely, sql as Sql } from 'kysely';
import type { Database } from './schema.js';
import type { Queryable } from './queryable.js';

/**
 * Kysely as a typed query builder over {@link Database}, for the operator's read paths (ADR 0010). It only compiles:
 * {@link runQuery} sends the statement through the caller's own `query` — a pool, or the client of a transaction
 * the read takes part in — so a read keeps its connection, its transaction, the pool's type parsers and pg's
 * errors, and no Kysely instance owns (or ends) a pool.
 */
export interface QueryBuilder {
  readonly db: Kysely<Database>;
  /** Kysely's `sql` tag, for the parts that read clearer as SQL (typed by `sql<T>`). */
  readonly sql: typeof Sql;
}

let loaded: Promise<QueryBuilder> | undefined;

/**
 * The query builder, Kysely loaded on first use: importing Kysely costs a command ≈ 180 ms on Node 20 (ADR 0010),
 * which the commands that never read through it (`enqueue` without `--wait`, `migrate`, `--help`) do not pay. A
 * worker loads it as it starts (it reads a batch's report when the batch finishes), not during a job.
 */
export function queryBuilder(): Promise<QueryBuilder> {
  loaded ??= import('kysely').then(
    (kysely) => ({
      db: new kysely.Kysely<Database>({
        dialect: {
          createAdapter: () => new kysely.PostgresAdapter(),
          createDriver: () => new kysely.DummyDriver(),
          createIntrospector: (db) => new kysely.PostgresIntrospector(db),
          createQueryCompiler: () => new kysely.PostgresQueryCompiler(),
        },
      }),
      sql: kysely.sql,
    }),
    (error: unknown) => {
      loaded = undefined;
      throw error;
    },
  );
  return loaded;
}

/** Runs `query` (built with {@link queryBuilder}) on `db`: its rows, typed by the query. */
export async function runQuery<O>(db: Queryable, query: Compilable<O>): Promise<O[]> {
  const compiled = query.compile();
  const result = await db.query(compiled.sql, [...compiled.parameters]);
  return result.rows as O[];
}
