/**
 * Replies of a Redis that cannot take commands now: at its memory limit (`OOM`, with `noeviction`), a replica after a
 * failover (`READONLY`), loading its data after a restart (`LOADING`), a replica without its master (`MASTERDOWN`), a
 * cluster without a majority or moving slots (`CLUSTERDOWN`, `TRYAGAIN`), a script running too long (`BUSY`), writes
 * refused after a failed save (`MISCONF`), credentials it no longer accepts (`NOAUTH`, `WRONGPASS`), or a blocking
 * command cut short by a primary's demotion (`UNBLOCKED`). Found anywhere in the message: Redis 6.2 wraps an error
 * inside a script (`ERR Error running script … -OOM …`).
 */
const UNAVAILABLE_REPLY =
  /(?:^|[\s-])(OOM|READONLY|LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY|MISCONF|NOAUTH|WRONGPASS|UNBLOCKED)\b/;

/**
 * The client lost or cannot open its connection (to a node, or to every sentinel), or closed a connection that went
 * silent (`Socket timeout`, WINDFALL_REDIS_SILENCE_MS).
 */
const CONNECTION_FAILURE =
  /Socket timeout|Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|MaxRetriesPerRequest|connect ETIMEDOUT|Failed to refresh slots cache|None of startup nodes is available|All sentinels are unreachable|failed to connect to sentinel/i;

/**
 * True when a Redis error says the server cannot take commands now (see {@link UNAVAILABLE_REPLY}) or the connection
 * failed: not the fault of the work at hand; wait for Redis and try again.
 */
export function isRedisUnavailable(error: unknown): boolean {
  if (error === null || typeof error !== 'object') return false;
  const message = error instanceof Error ? error.message : String((error as { message?: unknown }).message ?? '');
  if (UNAVAILABLE_REPLY.test(message) || CONNECTION_FAILURE.test(message)) return true;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && CONNECTION_FAILURE.test(code);
}

/** A short, secret-free description of a Redis error for logs: its message's first line, never its command. */
export function describeRedisError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0]!.slice(0, 300);
}
