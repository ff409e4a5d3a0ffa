import type pg from 'pg';

/*
 * Silent PostgreSQL connections (ADR 0014). A connection whose peer stops answering without closing it — the server's
 * host failed over, a NAT or load-balancer entry was dropped — leaves a statement waiting for ever: TCP notices only
 * after minutes, and not at all when a proxy in between keeps the socket up. A pool made here gives each statement
 * a deadline (node-pg's `query_timeout`: the statement's own server-side limits plus the silence budget); a statement
 * past it counts its connection as silent. Its client is dropped, and so is every other connection of the pool opened
 * before it (they went through the same route: waiting for each to time out would multiply the outage), while
 * connections opened afterwards are used as usual.
 */

/** node-pg's message for a statement past its `query_timeout`. */
const READ_TIMEOUT_MESSAGE = 'Query read timeout';

/** True when `error` is a statement that got no answer before its deadline: its connection went silent. */
export function isSilentConnection(error: unknown): boolean {
  return error instanceof Error && error.message === READ_TIMEOUT_MESSAGE;
}

/** The words logs use for a silent connection (the gate's pause line names the service). */
export function describeSilence(silenceMs: number): string {
  return `a connection sent no answer for ${silenceMs} ms past its statement's own limits (it went silent: a failover to another host, a dropped NAT entry); it is dropped and the work runs again on a new connection`;
}

const GENERATION = Symbol('windfall.generation');

type Stamped = pg.PoolClient & { [GENERATION]?: number };
type ConnectCallback = (error: Error | undefined, client: pg.PoolClient | undefined, done: () => void) => void;

/**
 * Drops `client` from its pool (release with `error`) and makes sure its socket closes even when the peer is silent
 * (a graceful end waits for an answer that may never come).
 */
function drop(client: pg.PoolClient, error: Error): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
  client.release(error);
  setTimeout(() => stream?.destroy(), 1000).unref();
}

/**
 * Makes `pool` retire its connections on silence: every statement gets a deadline of `deadlineMs` unless it sets its
 * own (`query_timeout` in its config); when a client is released with a read timeout, every client opened before it
 * is dropped instead of being handed out again.
 */
export function retireOnSilence(pool: pg.Pool, deadlineMs: number): void {
  (pool.options as { query_timeout?: number }).query_timeout = deadlineMs;
  let generation = 0;
  pool.on('connect', (client) => {
    (client as Stamped)[GENERATION] = generation;
  });
  pool.on('release', (error: Error | undefined) => {
    if (isSilentConnection(error)) generation += 1;
  });
  const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
  const connectFresh = async (): Promise<pg.PoolClient> => {
    for (;;) {
      const client = (await connect()) as Stamped;
      if ((client[GENERATION] ?? generation) >= generation) return client;
      drop(client, new Error('retired: opened before another connection of its pool went silent'));
    }
  };
  const patched = (callback?: ConnectCallback): Promise<pg.PoolClient> | undefined => {
    if (!callback) return connectFresh();
    connectFresh().then(
      (client) => callback(undefined, client, () => client.release()),
      (error: Error) => callback(error, undefined, () => undefined),
    );
    return undefined;
  };
  (pool as unknown as { connect: typeof patched }).connect = patched;
}

/**
 * `query` with its own deadline, ms (node-pg reads `query_timeout` from a statement's config; its typings do not
 * declare it).
 */
export function withDeadline<I = unknown[]>(query: pg.QueryConfig<I>, deadlineMs: number): pg.QueryConfig<I> {
  return { ...query, query_timeout: deadlineMs } as pg.QueryConfig<I>;
}
