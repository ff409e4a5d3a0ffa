import type pg from 'pg';

/**
 * What runs one statement: a pool (each statement on any of its connections) or a client (inside its transaction).
 * Read paths and single-statement writes take this rather than a pool, so that a caller can run them inside its own
 * transaction.
 */
export type Queryable = Pick<pg.Pool, 'query'>;
