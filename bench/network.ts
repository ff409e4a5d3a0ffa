/**
 * The bench's network variants: the same PostgreSQL and Redis reached through a delaying TCP proxy (a round-trip
 * time added to every exchange), or PostgreSQL through PgBouncer in transaction pooling.
 */
import { startFaultProxy, type FaultProxy } from './soak/fault-proxy.js';
import { startPgBouncer, type PgBouncer } from './soak/pgbouncer.js';
import type { Servers } from './support.js';

/** Servers reached another way, and how to stop that way. */
export interface Route {
  /** URLs of the same servers, through the proxies or the pooler. */
  readonly servers: Servers;
  /** What the route adds, for notes and reports. */
  readonly label: string;
  /** The round trip the route added to PostgreSQL's exchanges so far, as measured (ms); null when it adds none. */
  addedRttMs(): number | null;
  close(): Promise<void>;
}

function hostPort(url: string, defaultPort: number): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname || '127.0.0.1', port: Number(parsed.port || defaultPort) };
}

/** `url` with its host and port replaced (user, password, database and query kept). */
function through(url: string, host: string, port: number): string {
  const parsed = new URL(url);
  parsed.hostname = host;
  parsed.port = String(port);
  return parsed.toString();
}

/**
 * Parses `--rtt`: round-trip times in ms separated by commas (`0,1,5`; fractions allowed), each ≥ 0 and ≤ 1000,
 * in the order given, repeats dropped.
 */
export function parseRttList(raw: string): number[] {
  const values = raw.split(',').map((part) => part.trim());
  const rtts: number[] = [];
  for (const value of values) {
    const ms = Number(value);
    if (value === '' || !Number.isFinite(ms) || ms < 0 || ms > 1000)
      throw new Error(`--rtt expects round-trip times in ms between 0 and 1000 separated by commas, got ${raw}`);
    if (!rtts.includes(ms)) rtts.push(ms);
  }
  return rtts;
}

/**
 * Puts a delaying TCP proxy ({@link startFaultProxy}) in front of PostgreSQL and another in front of Redis, each
 * delaying every chunk by `rttMs / 2` in each direction: every round trip to either server costs `rttMs` more. The
 * proxies run in this process (their timers on a helper thread, sub-millisecond).
 */
export async function delayedRoute(servers: Servers, rttMs: number): Promise<Route> {
  const postgres = hostPort(servers.databaseUrl, 5432);
  const redis = hostPort(servers.redisUrl, 6379);
  const proxies: FaultProxy[] = [];
  try {
    proxies.push(await startFaultProxy({ target: postgres, delayMs: rttMs / 2 }));
    proxies.push(await startFaultProxy({ target: redis, delayMs: rttMs / 2 }));
  } catch (error) {
    await Promise.all(proxies.map((proxy) => proxy.close()));
    throw error;
  }
  const [pgProxy, redisProxy] = proxies as [FaultProxy, FaultProxy];
  return {
    servers: {
      databaseUrl: through(servers.databaseUrl, pgProxy.host, pgProxy.port),
      redisUrl: through(servers.redisUrl, redisProxy.host, redisProxy.port),
    },
    label: `${rttMs} ms RTT`,
    addedRttMs: () => {
      const stats = pgProxy.stats();
      return stats.delayedChunks === 0 ? null : 2 * stats.meanDelayMs;
    },
    async close() {
      await Promise.all(proxies.map((proxy) => proxy.close()));
    },
  };
}

/**
 * Starts Debian's PgBouncer ({@link startPgBouncer}, run as `postgres`) in transaction pooling with `poolSize`
 * server connections per database in front of `servers`' PostgreSQL; Redis stays direct.
 */
export async function pgBouncerRoute(servers: Servers, poolSize: number): Promise<Route & { bouncer: PgBouncer }> {
  const user = decodeURIComponent(new URL(servers.databaseUrl).username || 'postgres');
  if (user !== 'postgres')
    throw new Error(`--pgbouncer runs a trust-auth PgBouncer for user postgres; DATABASE_URL names ${user}`);
  const postgres = hostPort(servers.databaseUrl, 5432);
  const bouncer = await startPgBouncer({
    serverHost: postgres.host,
    serverPort: postgres.port,
    poolMode: 'transaction',
    poolSize,
  });
  return {
    bouncer,
    servers: { databaseUrl: through(servers.databaseUrl, bouncer.host, bouncer.port), redisUrl: servers.redisUrl },
    label: `PgBouncer transaction pooling, pool size ${poolSize}`,
    addedRttMs: () => null,
    close: () => bouncer.stop(),
  };
}
