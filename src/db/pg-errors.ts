/**
 * How a failed PostgreSQL call should be treated: the one table of SQLSTATEs and connection errors every path uses.
 *
 * - `unavailable`: the server refuses work or lost the connection — a terminated backend, a restart, a failover
 *   (read-only), too many connections, no disk or memory, credentials or a database it no longer accepts. Not the
 *   operation's fault: wait for the server, then run it again (statements are idempotent).
 * - `retry`: a clash with concurrent work (deadlock, serialization failure): run it again soon, a few times.
 * - `lock_timeout`: a row stayed locked by another transaction longer than `lock_timeout`: that row's owner waits.
 * - `insufficient_funds`: the wallet balance check refused a debit.
 * - `invalid`: a data exception or another integrity violation (an overflowing balance, a value out of range): the
 *   same input fails again; it is the input's fault.
 * - `permanent`: any other SQL error (a missing table, an internal error): not the fault of one input in particular.
 */
export type DatabaseErrorKind =
  'unavailable' | 'retry' | 'lock_timeout' | 'insufficient_funds' | 'invalid' | 'permanent';

/** Socket errors: the server or the network went away. */
const CONNECTION_ERROR_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
]);

/**
 * SQLSTATEs (exact, or a class by its two-character prefix) meaning the server cannot do work now:
 * 08 connection exceptions; 25006 read-only transaction (a standby, or a failover in progress); 28 credentials it no
 * longer accepts; 3D000 the database is gone; 42501 a privilege taken away; 53 insufficient resources (53300 too many
 * connections, disk full, out of memory); 57P01–57P05 admin/crash shutdown, cannot connect now, idle-session
 * timeout; 58 system errors (I/O).
 */
const UNAVAILABLE_CLASSES = ['08', '28', '53', '58'];
const UNAVAILABLE_CODES = new Set(['25006', '3D000', '42501', '57P01', '57P02', '57P03', '57P04', '57P05']);
/** 40001 serialization failure, 40P01 deadlock, 55006 object in use, 57014 a statement cancelled (by an operator). */
const RETRY_CODES = new Set(['40001', '40P01', '55006', '57014']);

/**
 * Messages of node-pg for a connection that failed or closed (no SQLSTATE); `Query read timeout` is a statement past
 * its deadline: its connection went silent (see silent-connections.ts).
 */
const CONNECTION_MESSAGES =
  /Query read timeout|Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED|Connection ended|Client was closed|terminating connection|the database system is (starting up|shutting down|in recovery)/i;

/** The SQLSTATE of an error PostgreSQL answered (five digits or capitals), or undefined for any other error. */
export function sqlStateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** 23505 unique_violation; with `constraint`, only a violation of that constraint. */
export function isUniqueViolation(error: unknown, constraint?: string): boolean {
  return (
    sqlStateOf(error) === '23505' &&
    (constraint === undefined || (error as { constraint?: unknown }).constraint === constraint)
  );
}

/** 55P03 lock_not_available: a statement waited past its `lock_timeout` for a row another transaction holds. */
export function isLockTimeout(error: unknown): boolean {
  return sqlStateOf(error) === '55P03';
}

/**
 * A resource error the size of one statement may cause while PostgreSQL otherwise works: 53100 disk full, 53200 out
 * of memory, 53400 a configuration limit such as `temp_file_limit`.
 */
export function isStatementResourceError(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state === '53100' || state === '53200' || state === '53400';
}

/**
 * The server is restarting or briefly cannot take a connection: 57P01–57P05 (shutdown, crash, cannot connect now,
 * idle-session timeout), 08006 connection failure, 53300 too many connections. Worth a few quick tries.
 */
export function isMomentaryConnectionFault(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state !== undefined && (state.startsWith('57P') || state === '08006' || state === '53300');
}

/** 3D000 invalid_catalog_name: the database named by the connection does not exist. */
export function isMissingDatabase(error: unknown): boolean {
  return sqlStateOf(error) === '3D000';
}

/**
 * `create database` lost a race with another process creating the same database: 42P04 duplicate_database, or
 * 23505 when the race is seen in `pg_database`'s unique index.
 */
export function isDatabaseCreatedMeanwhile(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state === '42P04' || state === '23505';
}

/** Sorts an error thrown by a PostgreSQL call into a {@link DatabaseErrorKind}. */
export function classifyDatabaseError(error: unknown): DatabaseErrorKind {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (CONNECTION_ERROR_CODES.has(code)) return 'unavailable';
    if (code.length === 5) {
      if (UNAVAILABLE_CODES.has(code) || UNAVAILABLE_CLASSES.includes(code.slice(0, 2))) return 'unavailable';
      if (RETRY_CODES.has(code)) return 'retry';
      if (code === '55P03') return 'lock_timeout';
      if (code === '23514') return 'insufficient_funds';
      if (code.startsWith('22') || code.startsWith('23')) return 'invalid';
      return 'permanent';
    }
  }
  const message = error instanceof Error ? error.message : String(error);
  if (CONNECTION_MESSAGES.test(message)) return 'unavailable';
  // Not a PostgreSQL error at all (a driver or network problem without a code): worth a few more tries.
  return 'retry';
}

/** True for errors after which the same call may succeed: `unavailable`, `retry` and `lock_timeout`. */
export function isTransientDatabaseError(error: unknown): boolean {
  const kind = classifyDatabaseError(error);
  return kind === 'unavailable' || kind === 'retry' || kind === 'lock_timeout';
}

/** True when the server refuses work or the connection failed: wait for the server rather than blame the input. */
export function isDatabaseUnavailable(error: unknown): boolean {
  return classifyDatabaseError(error) === 'unavailable';
}
