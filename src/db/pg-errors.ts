/** How a failed database call should be treated. */
export type DatabaseErrorKind = 'transient' | 'insufficient_funds' | 'invalid' | 'permanent';

const CONNECTION_ERROR_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * Sorts a PostgreSQL (or socket) error: dropped connections, restarts, deadlocks, serialization failures and lack
 * of resources are transient (retry); a balance check violation is insufficient funds; data exceptions (numeric
 * overflow, bad text) are invalid input; the rest is permanent.
 */
export function classifyDatabaseError(error: unknown): DatabaseErrorKind {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code === 'string') {
    if (CONNECTION_ERROR_CODES.has(code)) return 'transient';
    if (code === '23514') return 'insufficient_funds';
    if (code.startsWith('08') || code.startsWith('53') || code.startsWith('57') || code.startsWith('58')) return 'transient';
    if (code === '40001' || code === '40P01' || code === '55P03' || code === '55006') return 'transient';
    if (code.startsWith('22')) return 'invalid';
    if (code.length === 5) return 'permanent';
  }
  if (/Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED|Connection ended/i.test(message)) {
    return 'transient';
  }
  // Not a PostgreSQL error at all (network, driver): assume it may pass.
  return 'transient';
}
