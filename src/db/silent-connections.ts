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

/** Every client of each pool made here, from its connection until the pool removes it. */
const clientsOf = new WeakMap<pg.Pool, Set<pg.PoolClient>>();

const RETIRED = Symbol('windfall.retired');

/** True for a client whose socket was closed on purpose (retired after a silence, or left at the end of its pool). */
export function isRetired(client: unknown): boolean {
  return (client as { [RETIRED]?: boolean } | null)?.[RETIRED] === true;
}

/** `performance.now()` of the last retirement for silence in this process (0 when none). */
let lastSilenceAt = 0;

/**
 * True when `error` is a silence, or a connection error of the moments right after one (the statements of the
 * connections retired with it fail with "Connection terminated"): for the logs to name the cause.
 */
export function followsSilence(error: unknown): boolean {
  if (isSilentConnection(error)) return true;
  return (
    lastSilenceAt > 0 &&
    performance.now() - lastSilenceAt < 5000 &&
    error instanceof Error &&
    /Connection terminated|terminated unexpectedly|Client has encountered a connection error/.test(error.message)
  );
}

function closeSocket(client: pg.PoolClient): void {
  (client as unknown as { [RETIRED]?: boolean })[RETIRED] = true;
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/** Keeps the set of `pool`'s clients (for {@link endPool} and retirement). Idempotent. */
export function trackClients(pool: pg.Pool): void {
  if (clientsOf.has(pool)) return;
  const clients = new Set<pg.PoolClient>();
  clientsOf.set(pool, clients);
  pool.on('connect', (client) => clients.add(client));
  pool.on('remove', (client) => clients.delete(client));
}

/**
 * Makes `pool` retire its connections on silence: every statement gets a deadline of `deadlineMs` unless it sets its
 * own (`query_timeout` in its config); when a client is released with a read timeout, the socket of every client
 * opened before it is closed at once — idle ones and those still waiting in vain — so that the outage is paid once,
 * not once per connection; their statements fail as PostgreSQL unavailable and run again on new connections.
 */
export function retireOnSilence(pool: pg.Pool, deadlineMs: number): void {
  trackClients(pool);
  const clients = clientsOf.get(pool)!;
  (pool.options as { query_timeout?: number }).query_timeout = deadlineMs;
  // waiting for a free connection longer than a statement's deadline: the statements holding them are found silent
  // first (and named so), rather than this wait timing out while they still hang
  pool.options.connectionTimeoutMillis = Math.max(pool.options.connectionTimeoutMillis ?? 0, deadlineMs + 5000);
  let generation = 0;
  pool.on('connect', (client) => {
    (client as Stamped)[GENERATION] = generation;
  });
  pool.on('release', (error: Error | undefined, released: pg.PoolClient) => {
    if (!isSilentConnection(error)) return;
    const silent = (released as Stamped)[GENERATION] ?? generation;
    if (silent < generation) return; // retired already
    generation += 1;
    lastSilenceAt = performance.now();
    closeSocket(released);
    for (const client of clients) if (((client as Stamped)[GENERATION] ?? 0) < generation) closeSocket(client);
  });
  const connect = pool.connect.bind(pool) as () => Promise<pg.PoolClient>;
  const connectFresh = async (): Promise<pg.PoolClient> => {
    for (;;) {
      const client = (await connect()) as Stamped;
      if ((client[GENERATION] ?? generation) >= generation) return client;
      closeSocket(client);
      client.release(new Error('retired: opened before another connection of its pool went silent'));
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

/**
 * Ends `pool`, waiting at most `graceMs` for its connections to close gracefully; then closes the sockets of those
 * left (a silent peer never answers the goodbye, and `pool.end()` would wait for it for ever). Needs
 * {@link trackClients} on the pool to reach them.
 */
export async function endPool(pool: pg.Pool, graceMs = 2000): Promise<void> {
  if (pool.ended) return;
  const ended = pool.end();
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([
    ended.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
  ]);
  clearTimeout(timer);
  if (!late) return;
  for (const client of clientsOf.get(pool) ?? []) closeSocket(client);
  await Promise.race([ended, new Promise((resolve) => setTimeout(resolve, graceMs).unref())]);
}
